"""Storage transports: the Storage/Upload seam (base), the rclone CLI (rcat) and the rclone rc API."""
