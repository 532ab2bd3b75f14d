terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "6.14.0"
    }
  }

  # For a team, keep state in S3:
  # backend "s3" {
  #   bucket = "my-terraform-state"
  #   key    = "corisync/aws.tfstate"
  #   region = "eu-west-1"
  # }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = var.tags
  }
}
