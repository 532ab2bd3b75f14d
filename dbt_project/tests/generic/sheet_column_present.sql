{#-
  The broken-sheet alarm of a sheet tab: fails (one row) when the tab has rows but none of them has a value in
  `column_name`. That is what a missing or renamed header looks like after the sync: the synced table has no
  such column, and macros/airbyte.sql reads it as NULL in every row. A blank cell here and there is no failure
  (people leave cells empty). `term` picks the tab in a model that unions several (stg_sheet_attendance).
-#}
{% test sheet_column_present(model, column_name, term=none) %}
select rows_in_tab, rows_with_value
from (
    select count(*) as rows_in_tab, count({{ column_name }}) as rows_with_value
    from {{ model }}
    {%- if term is not none %}
    where term = '{{ term }}'
    {%- endif %}
) as tab
where rows_in_tab > 0 and rows_with_value = 0
{% endtest %}
