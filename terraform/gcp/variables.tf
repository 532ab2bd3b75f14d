variable "project_id" {
  description = "GCP project that holds the BigQuery datasets (CORISYNC_GCP_PROJECT) and the VM."
  type        = string
}

variable "region" {
  description = "Region of the VM, its subnet and the KMS key ring (e.g. europe-west1)."
  type        = string
  default     = "europe-west1"
}

variable "zone" {
  description = "Zone of the VM (inside region)."
  type        = string
  default     = "europe-west1-b"
}

variable "bq_location" {
  description = "BigQuery location of the datasets (CORISYNC_BQ_LOCATION), e.g. EU, US or a region."
  type        = string
  default     = "EU"
}

variable "kms_location" {
  description = "Location of the key ring for the datasets' CMEK key: must match bq_location (\"europe\" for EU, \"us\" for US, or the region)."
  type        = string
  default     = "europe"
}

variable "raw_dataset_id" {
  description = "Dataset the raw CDC tables land in (CORISYNC_BQ_RAW_DATASET)."
  type        = string
  default     = "corisync_raw"
}

variable "staging_dataset_id" {
  description = "Dataset of the dbt staging models (CORISYNC_BQ_STAGING_DATASET)."
  type        = string
  default     = "corisync_staging"
}

variable "marts_dataset_id" {
  description = "Dataset of the dbt marts (CORISYNC_BQ_MARTS_DATASET)."
  type        = string
  default     = "corisync_marts"
}

variable "airbyte_dataset_id" {
  description = "Dataset Airbyte's BigQuery destination writes the streams to (CORISYNC_BQ_AIRBYTE_DATASET; terraform/airbyte's bq_dataset)."
  type        = string
  default     = "corisync_airbyte"
}

variable "airbyte_internal_dataset_id" {
  description = "Dataset of Airbyte's own raw tables (the BigQuery destination's raw_data_dataset)."
  type        = string
  default     = "airbyte_internal"
}

variable "raw_partition_expiration_days" {
  description = "Partitions of raw CDC tables older than this are dropped (0 = keep forever)."
  type        = number
  default     = 400

  validation {
    condition     = var.raw_partition_expiration_days >= 0
    error_message = "raw_partition_expiration_days must be 0 or more."
  }
}

variable "staging_table_expiration_days" {
  description = "Staging tables expire this long after their last rebuild (dbt rebuilds them every run; 0 = never)."
  type        = number
  default     = 14

  validation {
    condition     = var.staging_table_expiration_days >= 0
    error_message = "staging_table_expiration_days must be 0 or more."
  }
}

variable "dbt_impersonation" {
  description = "true once dbt's prod profile sets impersonate_service_account to the dbt account: Dagster then only reads staging and marts. false (today's profile): dbt runs as the Dagster account, which therefore writes them."
  type        = bool
  default     = false
}

variable "create_vm" {
  description = "Create the VM that runs the compose stack here (false when it runs on AWS or DigitalOcean)."
  type        = bool
  default     = true
}

variable "machine_type" {
  description = "VM machine type: the whole stack (Kafka, Debezium, Spark, Dagster, Metabase) needs about 16 GB."
  type        = string
  default     = "e2-standard-4"
}

variable "disk_size_gb" {
  description = "Boot disk size in GB (Docker volumes: Postgres, Kafka, images)."
  type        = number
  default     = 100
}

variable "subnet_cidr" {
  description = "CIDR of the VM's subnet."
  type        = string
  default     = "10.42.0.0/24"
}

variable "repo_url" {
  description = "Git URL the VM clones CoriSync from (https; a deploy token in it would land in state: use a public or mirrored URL)."
  type        = string
}

variable "repo_ref" {
  description = "Branch or tag of CoriSync to deploy."
  type        = string
  default     = "main"
}

variable "labels" {
  description = "Labels added to every resource that takes them."
  type        = map(string)
  default = {
    app = "corisync"
  }
}
