variable "region" {
  description = "AWS region of the VM."
  type        = string
  default     = "eu-west-1"
}

variable "instance_type" {
  description = "EC2 instance type: the whole stack (Kafka, Debezium, Spark, Dagster, Metabase) needs about 16 GB."
  type        = string
  default     = "m6i.xlarge"
}

variable "disk_size_gb" {
  description = "Root volume size in GB (Docker volumes: Postgres, Kafka, images)."
  type        = number
  default     = 100
}

variable "subnet_id" {
  description = "Subnet of the VM (a subnet with a route to the internet for image pulls; null = a default-VPC subnet)."
  type        = string
  default     = null
}

variable "associate_public_ip" {
  description = "Give the VM a public IP for egress (needed in a public subnet without NAT). No inbound port is opened either way."
  type        = bool
  default     = true
}

variable "repo_url" {
  description = "Git URL the VM clones CoriSync from (https; a token in it would land in state and user data)."
  type        = string
}

variable "repo_ref" {
  description = "Branch or tag of CoriSync to deploy."
  type        = string
  default     = "main"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default = {
    app = "corisync"
  }
}
