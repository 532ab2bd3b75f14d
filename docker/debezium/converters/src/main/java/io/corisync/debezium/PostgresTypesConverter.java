package io.corisync.debezium;

import java.lang.reflect.Array;
import java.math.BigDecimal;
import java.sql.SQLException;
import java.util.Properties;

import org.apache.kafka.connect.data.SchemaBuilder;

import io.debezium.spi.converter.CustomConverter;
import io.debezium.spi.converter.RelationalColumn;

/**
 * CoriSync's converter for the Postgres types Debezium 3.6.3 does not send faithfully.
 *
 * <p><b>Arrays</b>: every array column as the JSON text of its value, nesting kept ({@code io.debezium.data.Json}).
 * Debezium's own array mapping has one dimension in its Connect schema: a two-dimensional value such as
 * {@code '{{1,2},{3,4}}'} arrives as {@code [null,null]}. Postgres does not fix an array column's dimensions,
 * so every array column (type names starting with {@code _}) is written recursively: numbers and booleans as
 * JSON literals, NULL as null, anything else as the JSON string of its text (as {@code array_to_json} does for
 * text, uuid, enums, dates).
 *
 * <p><b>Domains over numeric</b>: see {@link DomainDecimal}.
 *
 * <p>Configured as {@code converters=pgtypes}, {@code pgtypes.type=io.corisync.debezium.PostgresTypesConverter}.
 */
public class PostgresTypesConverter implements CustomConverter<SchemaBuilder, RelationalColumn> {

    public static final String JSON_SCHEMA_NAME = "io.debezium.data.Json";

    @Override
    public void configure(Properties props) {
    }

    @Override
    public void converterFor(RelationalColumn column, ConverterRegistration<SchemaBuilder> registration) {
        String type = column.typeName();
        if (type != null && DomainDecimal.isNumericDomain(column)) {
            DomainDecimal.register(column, registration);
            return;
        }
        if (type == null || !type.startsWith("_")) {
            return;
        }
        SchemaBuilder schema = SchemaBuilder.string().name(JSON_SCHEMA_NAME).version(1);
        if (column.isOptional()) {
            schema.optional();
        }
        registration.register(schema, value -> value == null ? null : toJson(value));
    }

    static String toJson(Object value) {
        StringBuilder out = new StringBuilder();
        write(out, value);
        return out.toString();
    }

    private static void write(StringBuilder out, Object value) {
        if (value instanceof java.sql.Array) {
            try {
                value = ((java.sql.Array) value).getArray();
            }
            catch (SQLException e) {
                throw new IllegalStateException("cannot read a Postgres array value", e);
            }
        }
        if (value == null) {
            out.append("null");
        }
        else if (value.getClass().isArray()) {
            out.append('[');
            int n = Array.getLength(value);
            for (int i = 0; i < n; i++) {
                if (i > 0) {
                    out.append(',');
                }
                write(out, Array.get(value, i));
            }
            out.append(']');
        }
        else if (value instanceof BigDecimal) {
            out.append(((BigDecimal) value).toPlainString());
        }
        else if (value instanceof Double || value instanceof Float) {
            double d = ((Number) value).doubleValue();
            if (Double.isNaN(d) || Double.isInfinite(d)) {
                quote(out, value.toString());  // JSON has no NaN/Infinity
            }
            else {
                out.append(value);
            }
        }
        else if (value instanceof Number || value instanceof Boolean) {
            out.append(value);
        }
        else {
            quote(out, value.toString());
        }
    }

    private static void quote(StringBuilder out, String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                case '\b' -> out.append("\\b");
                case '\f' -> out.append("\\f");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    }
                    else {
                        out.append(c);
                    }
                }
            }
        }
        out.append('"');
    }
}
