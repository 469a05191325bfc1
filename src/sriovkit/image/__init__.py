"""What the image does when a DaemonSet gives it no command: upstream's two roles (sriovkit.image.entrypoint)."""
