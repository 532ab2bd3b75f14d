output "instance_id" {
  description = "EC2 instance id (for aws ssm start-session --target)."
  value       = aws_instance.corisync.id
}

output "private_ip" {
  description = "Private IP of the VM."
  value       = aws_instance.corisync.private_ip
}

output "ssm_session_command" {
  description = "Shell on the VM through SSM Session Manager (no SSH port is open)."
  value       = "aws ssm start-session --region ${var.region} --target ${aws_instance.corisync.id}"
}

output "ssm_dagster_tunnel_command" {
  description = "Forward the Dagster UI to http://localhost:3000 (use 3001 for Metabase, 8222 for Vaultwarden)."
  value       = "aws ssm start-session --region ${var.region} --target ${aws_instance.corisync.id} --document-name AWS-StartPortForwardingSession --parameters portNumber=3000,localPortNumber=3000"
}
