output "workspace_id" {
  description = "CORISYNC_AIRBYTE_WORKSPACE_ID for docker/.env: the workspace of the connections."
  value       = var.workspace_id
}

output "connection_ids" {
  description = "Airbyte connection id per CoriSync connection name (the Dagster assets find them by name in the workspace)."
  value = {
    training_sheets = airbyte_connection.training_sheets.connection_id
    ga4_web         = airbyte_connection.ga4_web.connection_id
  }
}

output "source_ids" {
  description = "Airbyte source ids (Google Sheets, GA4)."
  value = {
    google_sheets    = airbyte_source.google_sheets.source_id
    google_analytics = airbyte_source.google_analytics.source_id
  }
}

output "destination_id" {
  description = "Airbyte destination id (BigQuery)."
  value       = airbyte_destination.bigquery.destination_id
}

output "bq_dataset" {
  description = "CORISYNC_BQ_AIRBYTE_DATASET for docker/.env: the dataset the synced tables land in."
  value       = var.bq_dataset
}
