# --- the Airbyte server ------------------------------------------------------------------------------
variable "airbyte_url" {
  description = "Base URL of the Airbyte server as seen from where you run terraform (abctl on the VM through an SSH tunnel: http://localhost:8000). Its APIs are <url>/api/public/v1 and <url>/api/v1."
  type        = string
  default     = "http://localhost:8000"

  validation {
    condition     = can(regex("^https?://[^/]+", var.airbyte_url))
    error_message = "airbyte_url must be an http(s) URL such as http://localhost:8000."
  }
}

variable "airbyte_client_id" {
  description = "Client id of an Airbyte application (abctl: `abctl local credentials`). Set TF_VAR_airbyte_client_id."
  type        = string
  sensitive   = true
}

variable "airbyte_client_secret" {
  description = "Its client secret. Set TF_VAR_airbyte_client_secret; never in a file."
  type        = string
  sensitive   = true
}

variable "workspace_id" {
  description = "Airbyte workspace that holds the connections (the id in the UI's URL: /workspaces/<id>/...). Also CORISYNC_AIRBYTE_WORKSPACE_ID."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.workspace_id))
    error_message = "workspace_id must be a UUID."
  }
}

# --- Google Sheets: the trainers' workbook -----------------------------------------------------------
variable "spreadsheet_id" {
  description = "Id (or full URL) of the trainers' workbook, shared read-only with the service account of google_service_account_json."
  type        = string
}

variable "google_sheets_connector_version" {
  description = "source-google-sheets version whose spec validates the configuration at plan time (the one the local stack runs)."
  type        = string
  default     = "0.11.0"
}

# --- Google Analytics 4: the Data API ----------------------------------------------------------------
variable "ga4_property_id" {
  description = "Numeric id of the GA4 property of the web platform (Admin > Property details)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+$", var.ga4_property_id))
    error_message = "ga4_property_id is the numeric property id, e.g. 123456789."
  }
}

variable "ga4_start_date" {
  description = "First day the GA4 report is read from (YYYY-MM-DD); later syncs continue from the cursor."
  type        = string
  default     = "2026-01-01"

  validation {
    condition     = can(regex("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", var.ga4_start_date))
    error_message = "ga4_start_date must be YYYY-MM-DD."
  }
}

variable "ga4_connector_version" {
  description = "source-google-analytics-data-api version whose spec validates the configuration (the one the local stack runs)."
  type        = string
  default     = "2.8.2"
}

variable "google_service_account_json" {
  description = "Key (JSON) of the Google service account that reads the workbook and the GA4 property (Viewer on both). Set TF_VAR_google_service_account_json=\"$(cat key.json)\"."
  type        = string
  sensitive   = true
}

# --- BigQuery: where Airbyte writes -----------------------------------------------------------------
variable "gcp_project" {
  description = "GCP project of the BigQuery datasets (CORISYNC_GCP_PROJECT)."
  type        = string
}

variable "bq_dataset" {
  description = "Dataset the synced tables land in, as <prefix><stream> (CORISYNC_BQ_AIRBYTE_DATASET)."
  type        = string
  default     = "corisync_airbyte"
}

variable "bq_location" {
  description = "BigQuery location of the dataset: the one of the other CoriSync datasets (CORISYNC_BQ_LOCATION)."
  type        = string
  default     = "EU"
}

variable "bigquery_credentials_json" {
  description = "Key (JSON) of the service account Airbyte's BigQuery destination writes as (BigQuery Job User on the project, Data Editor on the dataset). Set TF_VAR_bigquery_credentials_json=\"$(cat key.json)\"."
  type        = string
  sensitive   = true
}
