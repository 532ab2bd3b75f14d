# CoriSync on AWS: one EC2 VM that installs Docker with cloud-init and runs docker/docker-compose.yml.
# No inbound port at all: operators connect with SSM Session Manager (also for port forwarding to the
# UIs). BigQuery stays on GCP (terraform/gcp with create_vm = false); the VM reads it with a key file.

locals {
  app_dir = "/opt/corisync/app"
}

data "aws_vpc" "default" {
  count   = var.subnet_id == null ? 1 : 0
  default = true
}

data "aws_subnets" "default" {
  count = var.subnet_id == null ? 1 : 0

  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default[0].id]
  }
}

data "aws_subnet" "selected" {
  id = var.subnet_id != null ? var.subnet_id : sort(data.aws_subnets.default[0].ids)[0]
}

data "aws_ami" "ubuntu" {
  most_recent = true
  owners      = ["099720109477"] # Canonical

  filter {
    name   = "name"
    values = ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]
  }

  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

# --- encryption key for the root volume -------------------------------------------------------------
data "aws_caller_identity" "current" {}

resource "aws_kms_key" "ebs" {
  description             = "CoriSync VM root volume"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  # The default key policy, written out: the account administers the key (in a key policy "*" means
  # this key); EBS uses it through grants made on behalf of the account's principals.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministersThisKey"
      Effect    = "Allow"
      Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
}

resource "aws_kms_alias" "ebs" {
  name          = "alias/corisync-ebs"
  target_key_id = aws_kms_key.ebs.key_id
}

# --- identity: SSM Session Manager only ------------------------------------------------------------
data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "corisync" {
  name               = "corisync-vm"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
}

resource "aws_iam_role_policy_attachment" "ssm" {
  role       = aws_iam_role.corisync.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "corisync" {
  name = "corisync-vm"
  role = aws_iam_role.corisync.name
}

# --- network: no ingress; egress HTTPS/HTTP for packages and images, DNS, NTP ---------------------
resource "aws_security_group" "corisync" {
  name        = "corisync-vm"
  description = "CoriSync VM: no inbound traffic; outbound for packages, images and BigQuery"
  vpc_id      = data.aws_subnet.selected.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.corisync.id
  description       = "HTTPS: Docker images, PyPI, git, BigQuery, SSM"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "http" {
  security_group_id = aws_security_group.corisync.id
  description       = "HTTP: Ubuntu package mirrors"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "dns" {
  security_group_id = aws_security_group.corisync.id
  description       = "DNS"
  ip_protocol       = "udp"
  from_port         = 53
  to_port           = 53
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "ntp" {
  security_group_id = aws_security_group.corisync.id
  description       = "NTP"
  ip_protocol       = "udp"
  from_port         = 123
  to_port           = 123
  cidr_ipv4         = "0.0.0.0/0"
}

# --- the VM ---------------------------------------------------------------------------------------
resource "aws_instance" "corisync" {
  #checkov:skip=CKV_AWS_88:The public IP is for egress only (default VPC, no NAT gateway); the security group admits no inbound traffic. Set associate_public_ip = false in a private subnet with NAT.
  ami                         = data.aws_ami.ubuntu.id
  instance_type               = var.instance_type
  subnet_id                   = data.aws_subnet.selected.id
  vpc_security_group_ids      = [aws_security_group.corisync.id]
  iam_instance_profile        = aws_iam_instance_profile.corisync.name
  associate_public_ip_address = var.associate_public_ip
  ebs_optimized               = true
  monitoring                  = true

  user_data = templatefile("${path.module}/../cloud-init/corisync.yaml.tftpl", {
    repo_url = var.repo_url
    repo_ref = var.repo_ref
    app_dir  = local.app_dir
  })
  user_data_replace_on_change = false

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.disk_size_gb
    encrypted             = true
    kms_key_id            = aws_kms_key.ebs.arn
    delete_on_termination = true
  }

  tags = {
    Name = "corisync"
  }

  lifecycle {
    ignore_changes = [ami]
  }
}
