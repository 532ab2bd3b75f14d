terraform {
  required_version = ">= 1.6.0"

  required_providers {
    digitalocean = {
      source  = "digitalocean/digitalocean"
      version = "2.55.0"
    }
  }
}

# The API token comes from the environment (DIGITALOCEAN_TOKEN), never from a file in git.
provider "digitalocean" {}
