output "bq_datasets" {
  description = "Dataset ids for docker/.env: CORISYNC_BQ_RAW_DATASET, CORISYNC_BQ_STAGING_DATASET, CORISYNC_BQ_MARTS_DATASET, CORISYNC_BQ_AIRBYTE_DATASET."
  value       = { for layer, ds in google_bigquery_dataset.this : layer => ds.dataset_id }
}

output "exports_uri" {
  description = "CORISYNC_EXPORTS_URI for docker/.env: where exports/dashboard_json writes dashboard.json."
  value       = "gs://${google_storage_bucket.exports.name}/dashboard"
}

output "lake_uri" {
  description = "CORISYNC_LAKE_URI for docker/.env: where the web Spark assets write Parquet."
  value       = "gs://${google_storage_bucket.lake.name}/lake"
}

output "bq_location" {
  description = "CORISYNC_BQ_LOCATION for docker/.env."
  value       = var.bq_location
}

output "dagster_service_account" {
  description = "Identity of the Dagster runs (the GCE VM's service account; elsewhere create a key for it)."
  value       = google_service_account.dagster.email
}

output "dbt_service_account" {
  description = "Service account dbt impersonates (impersonate_service_account in the prod profile)."
  value       = google_service_account.dbt.email
}

output "airbyte_service_account" {
  description = "Account of Airbyte's BigQuery destination (terraform/airbyte's bigquery_credentials_json: create its key)."
  value       = google_service_account.airbyte.email
}

output "metabase_service_account" {
  description = "Read-only account for Metabase's BigQuery connection (create its key in the console)."
  value       = google_service_account.metabase.email
}

output "vm_name" {
  description = "Name of the VM running the stack (null when create_vm = false)."
  value       = var.create_vm ? google_compute_instance.corisync[0].name : null
}

output "ssh_command" {
  description = "SSH to the VM through IAP, with tunnels to the Dagster (3000), Metabase (3001) and Vaultwarden (8222) UIs."
  value       = var.create_vm ? "gcloud compute ssh ${google_compute_instance.corisync[0].name} --zone ${var.zone} --project ${var.project_id} --tunnel-through-iap -- -L 3000:127.0.0.1:3000 -L 3001:127.0.0.1:3001 -L 8222:127.0.0.1:8222" : null
}
