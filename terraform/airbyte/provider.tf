terraform {
  required_version = ">= 1.6.0"

  required_providers {
    airbyte = {
      source  = "airbytehq/airbyte"
      version = "1.2.0"
    }
  }

  # The state holds the connectors' credentials (Terraform stores sensitive values in clear in its state):
  # keep it off shared disks, or in a bucket only the operators can read, e.g.
  # backend "gcs" {
  #   bucket = "my-terraform-state"
  #   prefix = "corisync/airbyte"
  # }
}

# Airbyte's public API of a self-managed Airbyte (abctl on the VM, or an existing one). The client id and
# secret are an Airbyte application's (`abctl local credentials` prints the instance's); pass them as
# TF_VAR_airbyte_client_id / TF_VAR_airbyte_client_secret, never in a file.
provider "airbyte" {
  server_url    = "${local.airbyte_url}/api/public/v1"
  token_url     = "${local.airbyte_url}/api/public/v1/applications/token"
  client_id     = var.airbyte_client_id
  client_secret = var.airbyte_client_secret
}

locals {
  airbyte_url = trimsuffix(var.airbyte_url, "/")
}
