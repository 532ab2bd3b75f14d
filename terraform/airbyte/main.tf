# CoriSync's two Airbyte connections, as corisync_assets/airbyte/connections.py declares them (names, stream
# prefixes, streams, sync modes; tests/deploy/test_terraform.py compares the two). Airbyte writes each stream to
# the BigQuery table <dataset>.<prefix><stream>, the Dagster assets airbyte/<connection>/<stream> sync them.
#
# Connector configurations go through the provider's airbyte_connector_configuration data source: it resolves
# the connector definition and validates the configuration against the connector's spec at plan time; the
# secrets are merged in from configuration_secrets, so plans never show them.

# --- sources ----------------------------------------------------------------------------------------------
data "airbyte_connector_configuration" "google_sheets" {
  connector_name    = "source-google-sheets"
  connector_version = var.google_sheets_connector_version

  configuration = {
    spreadsheet_id = var.spreadsheet_id
    # column headers land snake_case ("Trainer email" -> trainer_email), as in the local stack
    names_conversion = true
    credentials = {
      auth_type = "Service"
    }
  }

  configuration_secrets = {
    credentials = {
      service_account_info = var.google_service_account_json
    }
  }
}

resource "airbyte_source" "google_sheets" {
  name          = "CoriSync training sheets"
  workspace_id  = var.workspace_id
  definition_id = data.airbyte_connector_configuration.google_sheets.definition_id
  configuration = data.airbyte_connector_configuration.google_sheets.configuration_json
}

data "airbyte_connector_configuration" "google_analytics" {
  connector_name    = "source-google-analytics-data-api"
  connector_version = var.ga4_connector_version

  configuration = {
    property_ids           = [var.ga4_property_id]
    date_ranges_start_date = var.ga4_start_date
    # the one report CoriSync reads: the stream course_pages
    custom_reports_array = [
      {
        name       = "course_pages"
        dimensions = ["date", "pagePath"]
        metrics    = ["sessions", "screenPageViews", "totalUsers"]
      },
    ]
    credentials = {
      auth_type = "Service"
    }
  }

  configuration_secrets = {
    credentials = {
      credentials_json = var.google_service_account_json
    }
  }
}

resource "airbyte_source" "google_analytics" {
  name          = "CoriSync GA4 web analytics"
  workspace_id  = var.workspace_id
  definition_id = data.airbyte_connector_configuration.google_analytics.definition_id
  configuration = data.airbyte_connector_configuration.google_analytics.configuration_json
}

# --- destination ------------------------------------------------------------------------------------------
data "airbyte_connector_configuration" "bigquery" {
  connector_name = "destination-bigquery"

  configuration = {
    project_id       = var.gcp_project
    dataset_id       = var.bq_dataset
    dataset_location = var.bq_location
    loading_method = {
      method = "Standard"
    }
  }

  configuration_secrets = {
    credentials_json = var.bigquery_credentials_json
  }
}

resource "airbyte_destination" "bigquery" {
  name          = "CoriSync BigQuery"
  workspace_id  = var.workspace_id
  definition_id = data.airbyte_connector_configuration.bigquery.definition_id
  configuration = data.airbyte_connector_configuration.bigquery.configuration_json
}

# --- connections ------------------------------------------------------------------------------------------
# Both schedules are manual on purpose: Dagster schedules the syncs (hourly for the sheets, daily for GA4:
# corisync_assets/airbyte/connections.py) and dbt follows them; an Airbyte schedule would sync behind
# Dagster's back. Sync modes use the public API's names: incremental_deduped_history is
# incremental + append_dedup (connections.py: incremental_append_dedup).

resource "airbyte_connection" "training_sheets" {
  name                                 = "training_sheets"
  source_id                            = airbyte_source.google_sheets.source_id
  destination_id                       = airbyte_destination.bigquery.destination_id
  namespace_definition                 = "destination"
  prefix                               = "sheets_"
  non_breaking_schema_updates_behavior = "propagate_columns"
  status                               = "active"

  schedule = {
    schedule_type = "manual"
  }

  configurations = {
    streams = [
      {
        name      = "trainings"
        sync_mode = "full_refresh_overwrite"
      },
      {
        name      = "attendance_spring"
        sync_mode = "full_refresh_overwrite"
      },
      {
        name      = "attendance_autumn"
        sync_mode = "full_refresh_overwrite"
      },
    ]
  }
}

resource "airbyte_connection" "ga4_web" {
  name                                 = "ga4_web"
  source_id                            = airbyte_source.google_analytics.source_id
  destination_id                       = airbyte_destination.bigquery.destination_id
  namespace_definition                 = "destination"
  prefix                               = "ga4_"
  non_breaking_schema_updates_behavior = "propagate_columns"
  status                               = "active"

  schedule = {
    schedule_type = "manual"
  }

  configurations = {
    streams = [
      {
        name         = "course_pages"
        sync_mode    = "incremental_deduped_history"
        cursor_field = ["date"]
        primary_key  = [["property_id"], ["date"], ["pagePath"]]
      },
    ]
  }
}
