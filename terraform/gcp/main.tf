# CoriSync on Google Cloud: the BigQuery datasets (raw, staging, marts) with CMEK and expiry rules,
# least-privilege service accounts for Dagster, dbt and Metabase, the exports bucket (the dashboard
# JSON the web platform reads), and (create_vm) a private VM that runs the compose stack, reachable
# through IAP only.

locals {
  app_dir = "/opt/corisync/app"

  services = ["bigquery.googleapis.com", "cloudkms.googleapis.com", "compute.googleapis.com", "iam.googleapis.com", "iap.googleapis.com", "storage.googleapis.com"]

  day_ms = 24 * 60 * 60 * 1000

  datasets = {
    raw = {
      id          = var.raw_dataset_id
      description = "CoriSync raw CDC tables (Debezium change events loaded by Dagster)."
      # Raw tables are partitioned by event day; old partitions are dropped.
      partition_expiration_ms = var.raw_partition_expiration_days > 0 ? var.raw_partition_expiration_days * local.day_ms : null
      table_expiration_ms     = null
    }
    staging = {
      id                      = var.staging_dataset_id
      description             = "CoriSync dbt staging models (rebuilt on every dbt run)."
      partition_expiration_ms = null
      table_expiration_ms     = var.staging_table_expiration_days > 0 ? var.staging_table_expiration_days * local.day_ms : null
    }
    marts = {
      id                      = var.marts_dataset_id
      description             = "CoriSync dbt marts (read by Metabase). Kept without expiry."
      partition_expiration_ms = null
      table_expiration_ms     = null
    }
    # Airbyte's BigQuery destination (terraform/airbyte): the synced streams, and its own raw tables.
    airbyte = {
      id                      = var.airbyte_dataset_id
      description             = "CoriSync Airbyte syncs: the training workbook (Google Sheets) and GA4, one table per stream."
      partition_expiration_ms = null
      table_expiration_ms     = null
    }
    airbyte_internal = {
      id                      = var.airbyte_internal_dataset_id
      description             = "Airbyte's raw tables (destinations v2), written and read by Airbyte only."
      partition_expiration_ms = null
      table_expiration_ms     = null
    }
  }

  dagster_model_role = var.dbt_impersonation ? "roles/bigquery.dataViewer" : "roles/bigquery.dataEditor"

  # Who may do what, dataset by dataset (least privilege).
  dataset_roles = {
    dagster_raw_editor = { dataset = "raw", role = "roles/bigquery.dataEditor", member = google_service_account.dagster.member }
    # dbt runs inside Dagster runs: as the dbt account when its profile impersonates it, else as Dagster.
    dagster_staging       = { dataset = "staging", role = local.dagster_model_role, member = google_service_account.dagster.member }
    dagster_marts         = { dataset = "marts", role = local.dagster_model_role, member = google_service_account.dagster.member }
    dbt_raw_viewer        = { dataset = "raw", role = "roles/bigquery.dataViewer", member = google_service_account.dbt.member }
    dbt_staging_editor    = { dataset = "staging", role = "roles/bigquery.dataEditor", member = google_service_account.dbt.member }
    dbt_marts_editor      = { dataset = "marts", role = "roles/bigquery.dataEditor", member = google_service_account.dbt.member }
    metabase_marts_viewer = { dataset = "marts", role = "roles/bigquery.dataViewer", member = google_service_account.metabase.member }
    # Airbyte writes its datasets; Dagster reads row counts there after a sync, dbt reads the streams.
    airbyte_editor          = { dataset = "airbyte", role = "roles/bigquery.dataEditor", member = google_service_account.airbyte.member }
    airbyte_internal_editor = { dataset = "airbyte_internal", role = "roles/bigquery.dataEditor", member = google_service_account.airbyte.member }
    dagster_airbyte_viewer  = { dataset = "airbyte", role = "roles/bigquery.dataViewer", member = google_service_account.dagster.member }
    dbt_airbyte_viewer      = { dataset = "airbyte", role = "roles/bigquery.dataViewer", member = google_service_account.dbt.member }
  }
}

resource "google_project_service" "this" {
  for_each = toset(local.services)

  service            = each.value
  disable_on_destroy = false
}

# ---------------------------------------------------------------------------------------------------
# Encryption: one customer-managed key for the datasets, rotated every 90 days.
# ---------------------------------------------------------------------------------------------------
resource "google_kms_key_ring" "corisync" {
  name     = "corisync"
  location = var.kms_location

  depends_on = [google_project_service.this]
}

resource "google_kms_crypto_key" "bigquery" {
  name            = "corisync-bigquery"
  key_ring        = google_kms_key_ring.corisync.id
  rotation_period = "7776000s"
  labels          = var.labels

  lifecycle {
    prevent_destroy = true
  }
}

data "google_bigquery_default_service_account" "this" {
  depends_on = [google_project_service.this]
}

resource "google_kms_crypto_key_iam_member" "bigquery" {
  crypto_key_id = google_kms_crypto_key.bigquery.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = data.google_bigquery_default_service_account.this.member
}

# ---------------------------------------------------------------------------------------------------
# BigQuery datasets
# ---------------------------------------------------------------------------------------------------
resource "google_bigquery_dataset" "this" {
  for_each = local.datasets

  dataset_id                      = each.value.id
  friendly_name                   = each.value.id
  description                     = each.value.description
  location                        = var.bq_location
  default_partition_expiration_ms = each.value.partition_expiration_ms
  default_table_expiration_ms     = each.value.table_expiration_ms
  delete_contents_on_destroy      = false
  labels                          = merge(var.labels, { layer = each.key })

  default_encryption_configuration {
    kms_key_name = google_kms_crypto_key.bigquery.id
  }

  depends_on = [google_kms_crypto_key_iam_member.bigquery]
}

# ---------------------------------------------------------------------------------------------------
# Exports bucket: exports/dashboard_json writes dashboard/dashboard.json here (CORISYNC_EXPORTS_URI);
# private, the web platform's backend reads it (or hands out signed URLs). Old versions expire.
# ---------------------------------------------------------------------------------------------------
resource "google_storage_bucket" "exports" {
  #checkov:skip=CKV_GCP_62:Access logs of a bucket holding one aggregate JSON document written by Dagster; Cloud Audit Logs (data access) cover reads when needed.
  name                        = "${var.project_id}-corisync-exports"
  location                    = var.bq_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = merge(var.labels, { layer = "exports" })

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 20
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.this]
}

# Dagster replaces the export object: create, read and delete objects in this bucket only.
resource "google_storage_bucket_iam_member" "dagster_exports" {
  bucket = google_storage_bucket.exports.name
  role   = "roles/storage.objectUser"
  member = google_service_account.dagster.member
}

# ---------------------------------------------------------------------------------------------------
# Lake bucket: the web Spark assets write hive-partitioned Parquet here (CORISYNC_LAKE_URI), BigQuery load
# jobs read it. Partitions are rewritten in place: replaced versions are kept a week (recovery), then go.
# ---------------------------------------------------------------------------------------------------
resource "google_storage_bucket" "lake" {
  #checkov:skip=CKV_GCP_62:Only Dagster's Spark runs and BigQuery load jobs (both as the dagster service account) touch the lake; Cloud Audit Logs (data access) cover reads when needed.
  name                        = "${var.project_id}-corisync-lake"
  location                    = var.bq_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = merge(var.labels, { layer = "lake" })

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.this]
}

# Spark (the Dagster runs and the cluster's executors, as the dagster account) rewrites partitions.
resource "google_storage_bucket_iam_member" "dagster_lake" {
  bucket = google_storage_bucket.lake.name
  role   = "roles/storage.objectUser"
  member = google_service_account.dagster.member
}

# ---------------------------------------------------------------------------------------------------
# Service accounts: Dagster (loads raw, runs dbt as the dbt account), dbt, Metabase (reads marts).
# ---------------------------------------------------------------------------------------------------
resource "google_service_account" "dagster" {
  account_id   = "corisync-dagster"
  display_name = "CoriSync Dagster"
  description  = "Dagster runs: write the raw CDC dataset, run BigQuery jobs; the VM's identity."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "dbt" {
  account_id   = "corisync-dbt"
  display_name = "CoriSync dbt"
  description  = "dbt: read raw, build staging and marts. Used by impersonation from Dagster."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "airbyte" {
  account_id   = "corisync-airbyte"
  display_name = "CoriSync Airbyte"
  description  = "Airbyte's BigQuery destination: write the Airbyte datasets."

  depends_on = [google_project_service.this]
}

resource "google_service_account" "metabase" {
  account_id   = "corisync-metabase"
  display_name = "CoriSync Metabase"
  description  = "Metabase: read the marts."

  depends_on = [google_project_service.this]
}

# Running query and load jobs is a project-level permission; data access stays per dataset below.
resource "google_project_iam_member" "job_user" {
  for_each = {
    airbyte  = google_service_account.airbyte.member
    dagster  = google_service_account.dagster.member
    dbt      = google_service_account.dbt.member
    metabase = google_service_account.metabase.member
  }

  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = each.value
}

resource "google_bigquery_dataset_iam_member" "this" {
  for_each = local.dataset_roles

  dataset_id = google_bigquery_dataset.this[each.value.dataset].dataset_id
  role       = each.value.role
  member     = each.value.member
}

# Dagster runs dbt with the dbt account's rights (dbt-bigquery `impersonate_service_account`).
resource "google_service_account_iam_member" "dagster_impersonates_dbt" {
  service_account_id = google_service_account.dbt.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.dagster.member
}

# ---------------------------------------------------------------------------------------------------
# The VM that runs docker/docker-compose.yml: private (no public IP), egress through Cloud NAT,
# SSH through Identity-Aware Proxy only.
# ---------------------------------------------------------------------------------------------------
# The boot disk holds docker/.env and the Docker volumes: encrypt it with a key of our own too.
data "google_project" "this" {}

resource "google_kms_key_ring" "vm" {
  count = var.create_vm ? 1 : 0

  name     = "corisync-vm"
  location = var.region

  depends_on = [google_project_service.this]
}

resource "google_kms_crypto_key" "vm_disk" {
  count = var.create_vm ? 1 : 0

  name            = "corisync-vm-disk"
  key_ring        = google_kms_key_ring.vm[0].id
  rotation_period = "7776000s"
  labels          = var.labels

  lifecycle {
    prevent_destroy = true
  }
}

resource "google_kms_crypto_key_iam_member" "vm_disk" {
  count = var.create_vm ? 1 : 0

  crypto_key_id = google_kms_crypto_key.vm_disk[0].id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:service-${data.google_project.this.number}@compute-system.iam.gserviceaccount.com"
}

resource "google_compute_network" "corisync" {
  count = var.create_vm ? 1 : 0

  name                    = "corisync"
  auto_create_subnetworks = false

  depends_on = [google_project_service.this]
}

resource "google_compute_subnetwork" "corisync" {
  count = var.create_vm ? 1 : 0

  name                     = "corisync"
  region                   = var.region
  network                  = google_compute_network.corisync[0].id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_router" "corisync" {
  count = var.create_vm ? 1 : 0

  name    = "corisync"
  region  = var.region
  network = google_compute_network.corisync[0].id
}

resource "google_compute_router_nat" "corisync" {
  count = var.create_vm ? 1 : 0

  name                               = "corisync"
  router                             = google_compute_router.corisync[0].name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

resource "google_compute_firewall" "iap_ssh" {
  count = var.create_vm ? 1 : 0

  name        = "corisync-allow-iap-ssh"
  network     = google_compute_network.corisync[0].id
  description = "SSH to the CoriSync VM from Identity-Aware Proxy only (gcloud compute ssh --tunnel-through-iap)."
  direction   = "INGRESS"
  # Google's published IAP TCP forwarding range.
  source_ranges = ["35.235.240.0/20"]
  target_tags   = ["corisync"]

  allow {
    protocol = "tcp"
    ports    = ["22"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_instance" "corisync" {
  count = var.create_vm ? 1 : 0

  name         = "corisync"
  zone         = var.zone
  machine_type = var.machine_type
  tags         = ["corisync"]
  labels       = var.labels

  boot_disk {
    kms_key_self_link = google_kms_crypto_key.vm_disk[0].id

    initialize_params {
      image  = "ubuntu-os-cloud/ubuntu-2404-lts-amd64"
      size   = var.disk_size_gb
      type   = "pd-balanced"
      labels = var.labels
    }
  }

  network_interface {
    subnetwork = google_compute_subnetwork.corisync[0].id
    # No access_config: no public IP.
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  # The VM's identity is the Dagster service account: the containers get BigQuery credentials from the
  # metadata server, so GOOGLE_APPLICATION_CREDENTIALS stays empty and no key file exists.
  service_account {
    email  = google_service_account.dagster.email
    scopes = ["cloud-platform"]
  }

  metadata = {
    user-data              = templatefile("${path.module}/../cloud-init/corisync.yaml.tftpl", { repo_url = var.repo_url, repo_ref = var.repo_ref, app_dir = local.app_dir })
    block-project-ssh-keys = "true"
    enable-oslogin         = "TRUE"
    serial-port-enable     = "false"
  }

  allow_stopping_for_update = true

  depends_on = [google_kms_crypto_key_iam_member.vm_disk]
}
