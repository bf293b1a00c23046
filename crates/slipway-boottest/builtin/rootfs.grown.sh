#!/bin/sh
# The image ships sized to its content; on first boot the root partition and filesystem must grow into
# the disk the instance was given (the host boots it on a bigger disk than the image).
root_source=$(findmnt -n -o SOURCE / 2>&1)
disk=/dev/$(lsblk -n -o PKNAME "$root_source" 2>/dev/null | head -n 1)
disk_bytes=$(lsblk -b -d -n -o SIZE "$disk" 2>/dev/null | tr -d ' ')
fs_bytes=$(df -B1 --output=size / 2>/dev/null | tail -n 1 | tr -d ' ')
if [ -n "$disk_bytes" ] && [ -n "$fs_bytes" ] && [ "$fs_bytes" -ge $((disk_bytes / 10 * 9)) ]; then
    echo "root filesystem $fs_bytes bytes on a $disk_bytes-byte disk"
else
    echo "root filesystem ${fs_bytes:-?} bytes on ${disk:-?} of ${disk_bytes:-?} bytes (root is $root_source)"
    exit 1
fi
