variable "region" {
  description = "DigitalOcean region slug of the droplet."
  type        = string
  default     = "fra1"
}

variable "droplet_size" {
  description = "Droplet size slug: the whole stack (Kafka, Debezium, Spark, Dagster, Metabase) needs about 16 GB."
  type        = string
  default     = "s-4vcpu-16gb"
}

variable "ssh_key_fingerprints" {
  description = "Fingerprints of SSH keys already uploaded to DigitalOcean that may log in as root."
  type        = list(string)

  validation {
    condition     = length(var.ssh_key_fingerprints) > 0
    error_message = "Give at least one SSH key fingerprint: password logins are not enabled."
  }
}

variable "admin_cidrs" {
  description = "Addresses allowed to reach SSH (port 22), e.g. your office or VPN egress. Nothing else is open."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0 && !contains(var.admin_cidrs, "0.0.0.0/0") && !contains(var.admin_cidrs, "::/0")
    error_message = "admin_cidrs must name specific networks, not the whole internet."
  }
}

variable "vpc_ip_range" {
  description = "Private range of the droplet's VPC."
  type        = string
  default     = "10.43.0.0/24"
}

variable "repo_url" {
  description = "Git URL the droplet clones CoriSync from (https; a token in it would land in state and user data)."
  type        = string
}

variable "repo_ref" {
  description = "Branch or tag of CoriSync to deploy."
  type        = string
  default     = "main"
}

variable "tags" {
  description = "Tags of the droplet and firewall."
  type        = list(string)
  default     = ["corisync"]
}
