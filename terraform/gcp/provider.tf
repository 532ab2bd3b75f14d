terraform {
  required_version = ">= 1.6.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "7.18.0"
    }
  }

  # State holds no secret of CoriSync (no keys are created here), but keep it in a bucket for a team:
  # backend "gcs" {
  #   bucket = "my-terraform-state"
  #   prefix = "corisync/gcp"
  # }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
