# CoriSync on DigitalOcean: one droplet that installs Docker with cloud-init and runs
# docker/docker-compose.yml, in its own VPC, behind a cloud firewall that admits SSH from admin_cidrs
# only. BigQuery stays on GCP (terraform/gcp with create_vm = false); the droplet reads it with a key file.

locals {
  app_dir = "/opt/corisync/app"
}

resource "digitalocean_vpc" "corisync" {
  name     = "corisync"
  region   = var.region
  ip_range = var.vpc_ip_range
}

resource "digitalocean_droplet" "corisync" {
  #checkov:skip=CKV_DIO_2:ssh_keys is set from var.ssh_key_fingerprints, a required variable validated to be non-empty; checkov cannot evaluate a variable without a default.
  name       = "corisync"
  image      = "ubuntu-24-04-x64"
  region     = var.region
  size       = var.droplet_size
  vpc_uuid   = digitalocean_vpc.corisync.id
  ssh_keys   = var.ssh_key_fingerprints
  monitoring = true
  backups    = true
  ipv6       = false
  tags       = var.tags

  user_data = templatefile("${path.module}/../cloud-init/corisync.yaml.tftpl", {
    repo_url = var.repo_url
    repo_ref = var.repo_ref
    app_dir  = local.app_dir
  })

  lifecycle {
    ignore_changes = [user_data]
  }
}

resource "digitalocean_firewall" "corisync" {
  name        = "corisync"
  droplet_ids = [digitalocean_droplet.corisync.id]
  tags        = var.tags

  inbound_rule {
    protocol         = "tcp"
    port_range       = "22"
    source_addresses = var.admin_cidrs
  }

  # Outbound: package mirrors, Docker images, git, BigQuery.
  outbound_rule {
    protocol              = "tcp"
    port_range            = "80"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }

  outbound_rule {
    protocol              = "tcp"
    port_range            = "443"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }

  outbound_rule {
    protocol              = "udp"
    port_range            = "53"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }

  outbound_rule {
    protocol              = "udp"
    port_range            = "123"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }
}
