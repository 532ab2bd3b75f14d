output "droplet_id" {
  description = "Id of the droplet."
  value       = digitalocean_droplet.corisync.id
}

output "ipv4_address" {
  description = "Public IPv4 of the droplet (SSH only, from admin_cidrs)."
  value       = digitalocean_droplet.corisync.ipv4_address
}

output "ssh_command" {
  description = "SSH to the droplet with tunnels to the Dagster (3000), Metabase (3001) and Vaultwarden (8222) UIs."
  value       = "ssh -L 3000:127.0.0.1:3000 -L 3001:127.0.0.1:3001 -L 8222:127.0.0.1:8222 root@${digitalocean_droplet.corisync.ipv4_address}"
}
