package io.corisync.debezium;

import java.math.BigDecimal;
import java.sql.Types;

import org.apache.kafka.connect.data.SchemaBuilder;

import io.debezium.spi.converter.CustomConverter.ConverterRegistration;
import io.debezium.spi.converter.RelationalColumn;

/**
 * A domain over numeric (e.g. {@code CREATE DOMAIN percent AS numeric(5,2)}): Debezium names the column's type
 * by the domain, so with {@code decimal.handling.mode=string} its value is a plain string and the landing cannot
 * tell it from text. This sends the exact decimal text under the schema name {@link #SCHEMA_NAME}, which the
 * landing maps to a decimal of the column's precision and scale (propagated as for any column).
 */
final class DomainDecimal {

    static final String SCHEMA_NAME = "io.corisync.data.DomainDecimal";

    private DomainDecimal() {
    }

    static boolean isNumericDomain(RelationalColumn column) {
        String type = column.typeName();
        int jdbc = column.jdbcType();
        return (jdbc == Types.NUMERIC || jdbc == Types.DECIMAL) && !type.startsWith("_")
                && !type.equalsIgnoreCase("numeric") && !type.equalsIgnoreCase("decimal")
                && !type.equalsIgnoreCase("money");
    }

    static void register(RelationalColumn column, ConverterRegistration<SchemaBuilder> registration) {
        SchemaBuilder schema = SchemaBuilder.string().name(SCHEMA_NAME).version(1);
        if (column.isOptional()) {
            schema.optional();
        }
        registration.register(schema, value -> {
            if (value == null) {
                return null;
            }
            if (value instanceof BigDecimal) {
                return ((BigDecimal) value).toPlainString();
            }
            return value.toString();
        });
    }
}
