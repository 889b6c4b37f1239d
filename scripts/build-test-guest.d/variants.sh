# Sourced by scripts/build-test-guest: the Debian 12 guest variants that cover layouts the
# plain debian12 guest does not (dracut + XFS, btrfs subvolumes, LVM + UEFI, every network
# renderer). Each starts from the cached Debian 12 root filesystem (debian12-rootfs.tar, so
# debootstrap runs once), installs its extra packages from the Debian archive (their .debs
# are kept in $cache/variant-debs), and is laid out as a VMware export: kernel device names
# (/dev/sdX) or controller by-path names in fstab and on the kernel line, and an initramfs
# holding the VMware controllers' drivers but no virtio. Outputs are streamOptimized VMDKs:
#
#   $CACHE/debian12-dracut-xfs.vmdk  MBR; /dev/sda1 ext4 /boot, /dev/sda2 XFS /; dracut
#                                    (host-only image without virtio), initramfs-tools removed
#   $CACHE/debian12-btrfs.vmdk       MBR; /dev/sda1 btrfs: / on subvolume @ (rootflags=subvol=@
#                                    on the kernel line; the default subvolume stays the top
#                                    level), /home on @home; /dev/sda2 swap
#   $CACHE/debian12-lvm-uefi.vmdk    GPT; /dev/sda1 ESP (grub-efi, removable path
#                                    EFI/BOOT/BOOTX64.EFI), /dev/sda2 ext4 /boot named by a
#                                    VMware PVSCSI by-path link, /dev/sda3 LVM PV: vg0/root, vg0/swap
#   $CACHE/debian12-net.vmdk         as debian12 (MBR, /dev/sda1 ext4), with ifupdown,
#                                    NetworkManager (keyfile), netplan and systemd-networkd all
#                                    configured for ens192 = 10.0.2.15/24 gw 10.0.2.2, bound to the
#                                    VMware MAC 00:50:56:8a:12:34; one renderer runs per boot (below)
#
# Every variant's boot marker also prints what it mounted (HYPER2KVM-MOUNT) and, for the
# network guest, the renderer and the config file or profile that configured the NIC.

variant_mac="00:50:56:8a:12:34"

# Unpacks the Debian 12 root filesystem into a new $work/rootfs and installs packages "$@"
# from the archive. Leaves proc, sys and dev bound (variant_seal undoes that).
variant_rootfs() {
  local name="$1"; shift
  [ -f "$cache/debian12-rootfs.tar" ] || build_debian12
  work=$(mktemp -d "$cache/.$name.XXXXXX")
  root="$work/rootfs"
  mkdir -p "$root" "$cache/variant-debs/partial"
  tar -C "$root" -xf "$cache/debian12-rootfs.tar"
  local m
  for m in proc sys dev; do
    mount --bind "/$m" "$root/$m"
    chroot_mounts+=("$root/$m")
  done
  mount --bind "$cache/variant-debs" "$root/var/cache/apt/archives"
  chroot_mounts+=("$root/var/cache/apt/archives")
  cp --remove-destination /etc/resolv.conf "$root/etc/resolv.conf"
  echo "deb $mirror bookworm main" >"$root/etc/apt/sources.list"
  local t; t=$(now)
  { chroot "$root" apt-get update -q \
      && DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --no-install-recommends "$@"; } \
    >"$work/apt.log" 2>&1 \
    || { tail -n 40 "$work/apt.log" >&2; echo "build-test-guest: installing $* into $name failed" >&2; exit 1; }
  step "$name: installed $* in $(elapsed "$t") s"
}

# The guest's kernel version (the one the Debian 12 root filesystem carries).
variant_kernel() { basename "$(ls "$root"/boot/vmlinuz-* | head -n 1)" | sed 's/^vmlinuz-//'; }

# The marker (as in debian12) plus what is mounted where.
variant_marker() {
  cat >"$root/usr/local/sbin/hyper2kvm-boot-marker" <<'EOF'
#!/bin/sh
addr=""
for i in $(seq 1 40); do
  addr=$(ip -4 -o addr show scope global 2>/dev/null | awk '{print $2 "=" $4}' | tr '\n' ' ')
  [ -n "$addr" ] && break
  sleep 1
done
mounts="/=$(findmnt -n -o SOURCE,FSTYPE / | tr -s ' ' ',')"
for m in /boot /home /boot/efi; do
  source=$(findmnt -n -o SOURCE --mountpoint "$m") && mounts="$mounts $m=$source"
done
echo "HYPER2KVM-MOUNT $mounts" >/dev/ttyS0
echo "HYPER2KVM-NET ${addr:-none}" >/dev/ttyS0
echo "HYPER2KVM-BOOT-OK" >/dev/ttyS0
EOF
  chmod 0755 "$root/usr/local/sbin/hyper2kvm-boot-marker"
}

# GRUB settings of a VMware install (kernel names, no UUIDs); $1 is extra kernel arguments.
variant_default_grub() {
  cat >"$root/etc/default/grub" <<EOF
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="$1console=ttyS0"
GRUB_DISABLE_LINUX_UUID=true
GRUB_DISABLE_OS_PROBER=true
EOF
}

# initramfs-tools with only the VMware controllers' drivers plus "$@" (as debian12 does).
variant_initramfs_tools() {
  sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"
  printf '%s\n' "# List of modules that you want to include in your initramfs." \
    sd_mod ata_piix ahci mptspi vmw_pvscsi ext4 crc32c_generic "$@" >"$root/etc/initramfs-tools/modules"
  chroot "$root" update-initramfs -u -k all >"$work/initramfs.log" 2>&1 \
    || { cat "$work/initramfs.log" >&2; exit 1; }
  if chroot "$root" lsinitramfs "/boot/initrd.img-$(variant_kernel)" | grep -q virtio_blk; then
    echo "build-test-guest: the initramfs unexpectedly contains virtio_blk" >&2; exit 1
  fi
}

# Unbinds the chroot and packs the root filesystem as $work/rootfs.tar for guestfish.
variant_seal() {
  local i
  rm -f "$root/etc/resolv.conf"
  for ((i = ${#chroot_mounts[@]} - 1; i >= 0; i--)); do umount "${chroot_mounts[$i]}"; done
  chroot_mounts=()
  rm -rf "$root"/var/lib/apt/lists/*_Packages
  tar -C "$root" --numeric-owner -cf "$work/rootfs.tar" .
  rm -rf "$root"
}

# Converts $work/disk.img to the cached VMDK $1 and removes $work.
variant_publish() {
  local out="$1" t; t=$(now)
  qemu-img convert -f raw -O vmdk -o subformat=streamOptimized,adapter_type=lsilogic "$work/disk.img" "$work/out.vmdk"
  mv -f "$work/out.vmdk" "$out"
  step "$(basename "$out") ($(du -m "$out" | cut -f1) MiB): VMDK in $(elapsed "$t") s"
  rm -rf "$work"
  work=""
}

variant_cached() {
  if [ -f "$1" ] && [ "$force" = 0 ]; then step "cached: $1"; return 0; fi
  return 1
}

build_debian12_dracut_xfs() {
  local out="$cache/debian12-dracut-xfs.vmdk" t0 root kver
  variant_cached "$out" && return
  t0=$(now)
  variant_rootfs debian12-dracut-xfs  # nothing yet: dracut's config must be there first
  # dracut's configuration as on a RHEL guest installed on VMware: a host-only image that
  # holds the drivers of the VMware controllers it ran on. (hostonly_cmdline off: in this
  # chroot it would record the build machine's root device.)
  mkdir -p "$root/etc/dracut.conf.d"
  cat >"$root/etc/dracut.conf.d/50-vmware.conf" <<'EOF'
hostonly="yes"
hostonly_cmdline="no"
add_drivers+=" sd_mod ata_piix ahci mptspi vmw_pvscsi xfs ext4 "
EOF
  local t; t=$(now)
  DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --no-install-recommends dracut xfsprogs \
    >"$work/apt-dracut.log" 2>&1 || { tail -n 40 "$work/apt-dracut.log" >&2; exit 1; }
  step "dracut, xfsprogs installed in $(elapsed "$t") s (initramfs-tools removed)"
  kver=$(variant_kernel)
  # The build machine's own disk is virtio, which a host-only image would pick up; a VMware
  # host has none, so leave virtio out here (only here: the guest's dracut config does not).
  chroot "$root" dracut --force --omit-drivers "virtio_blk virtio_scsi virtio_net virtio_pci virtio_console" \
    "/boot/initrd.img-$kver" "$kver" >"$work/dracut.log" 2>&1 || { tail -n 40 "$work/dracut.log" >&2; exit 1; }
  chroot "$root" lsinitrd "/boot/initrd.img-$kver" >"$work/lsinitrd.txt" 2>&1 || true
  if grep -q 'virtio_blk' "$work/lsinitrd.txt"; then
    echo "build-test-guest: the dracut image unexpectedly contains virtio_blk" >&2; exit 1
  fi
  if ! grep -qE '/xfs\.ko' "$work/lsinitrd.txt"; then
    { head -n 30 "$work/lsinitrd.txt"; grep -E 'kernel/fs/' "$work/lsinitrd.txt"; tail -n 20 "$work/dracut.log"; } >&2
    echo "build-test-guest: the dracut image has no xfs module" >&2; exit 1
  fi
  cat >"$root/etc/fstab" <<'EOF'
# /etc/fstab: static file system information.
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
/dev/sda2       /               xfs     defaults        0       0
/dev/sda1       /boot           ext4    defaults        0       2
EOF
  variant_default_grub ""
  variant_marker
  echo debian12-dracut-xfs >"$root/etc/hostname"
  rm -f "$root/boot/grub/grub.cfg"
  variant_seal
  guestfish <<EOF
sparse $work/disk.img 2G
run
part-init /dev/sda mbr
part-add /dev/sda p 2048 1050623
part-add /dev/sda p 1050624 -2048
part-set-bootable /dev/sda 1 true
mkfs ext4 /dev/sda1
mkfs xfs /dev/sda2
mount /dev/sda2 /
mkdir /boot
mount /dev/sda1 /boot
tar-in $work/rootfs.tar /
write /boot/grub/device.map "(hd0) /dev/sda\n"
command "grub-install --target=i386-pc /dev/sda"
command update-grub
EOF
  variant_publish "$out"
  step "debian12-dracut-xfs built in $(elapsed "$t0") s"
}

build_debian12_btrfs() {
  local out="$cache/debian12-btrfs.vmdk" t0 root
  variant_cached "$out" && return
  t0=$(now)
  variant_rootfs debian12-btrfs btrfs-progs
  cat >"$root/etc/fstab" <<'EOF'
# /etc/fstab: static file system information.
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
/dev/sda1       /               btrfs   subvol=@        0       0
/dev/sda1       /home           btrfs   subvol=@home    0       0
/dev/sda2       none            swap    sw              0       0
EOF
  # grub-mkconfig adds rootflags=subvol=@ itself when / is a subvolume; named here as well,
  # as installers that write it into GRUB_CMDLINE_LINUX do.
  variant_default_grub "rootflags=subvol=@ "
  variant_initramfs_tools btrfs
  variant_marker
  echo debian12-btrfs >"$root/etc/hostname"
  rm -f "$root/boot/grub/grub.cfg"
  variant_seal
  guestfish <<EOF
sparse $work/disk.img 2G
run
part-init /dev/sda mbr
part-add /dev/sda p 2048 3930111
part-add /dev/sda p 3930112 -2048
part-set-bootable /dev/sda 1 true
mkfs-btrfs /dev/sda1
mkswap /dev/sda2
mount /dev/sda1 /
btrfs-subvolume-create /@
btrfs-subvolume-create /@home
umount /
mount-options subvol=@ /dev/sda1 /
tar-in $work/rootfs.tar /
mount-options subvol=@home /dev/sda1 /home
write /home/on-subvolume-home "@home\n"
write /boot/grub/device.map "(hd0) /dev/sda\n"
command "grub-install --target=i386-pc /dev/sda"
command update-grub
EOF
  variant_publish "$out"
  step "debian12-btrfs built in $(elapsed "$t0") s"
}

build_debian12_lvm_uefi() {
  local out="$cache/debian12-lvm-uefi.vmdk" t0 root
  variant_cached "$out" && return
  t0=$(now)
  # grub-efi-amd64 replaces grub-pc.
  variant_rootfs debian12-lvm-uefi lvm2 grub-efi-amd64 dosfstools
  cat >"$root/etc/fstab" <<'EOF'
# /etc/fstab: static file system information.
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
/dev/mapper/vg0-root /          ext4    errors=remount-ro 0     1
# /boot was on /dev/sda2 during installation (VMware PVSCSI controller)
/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part2 /boot ext4 defaults 0 2
# /boot/efi was on /dev/sda1 during installation
/dev/sda1       /boot/efi       vfat    umask=0077      0       1
/dev/mapper/vg0-swap none       swap    sw              0       0
EOF
  variant_default_grub ""
  variant_initramfs_tools dm_mod
  variant_marker
  echo debian12-lvm-uefi >"$root/etc/hostname"
  rm -f "$root/boot/grub/grub.cfg"
  variant_seal
  guestfish <<EOF
sparse $work/disk.img 2G
run
part-init /dev/sda gpt
part-add /dev/sda p 2048 411647
part-add /dev/sda p 411648 1026047
part-add /dev/sda p 1026048 -2048
part-set-gpt-type /dev/sda 1 C12A7328-F81F-11D2-BA4B-00A0C93EC93B
part-set-gpt-type /dev/sda 3 E6D6D379-F507-44C2-A23C-238F2A3DF928
mkfs vfat /dev/sda1
mkfs ext4 /dev/sda2
pvcreate /dev/sda3
vgcreate vg0 /dev/sda3
lvcreate swap vg0 128
lvcreate-free root vg0 100
mkfs ext4 /dev/vg0/root
mkswap /dev/vg0/swap
mount /dev/vg0/root /
mkdir /boot
mount /dev/sda2 /boot
tar-in $work/rootfs.tar /
mkdir-p /boot/efi
mount /dev/sda1 /boot/efi
command "grub-install --target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram --no-uefi-secure-boot"
command update-grub
EOF
  variant_publish "$out"
  step "debian12-lvm-uefi built in $(elapsed "$t0") s"
}

# The network guest. All four renderers are installed and configured for the same NIC, so
# one conversion covers them all; which one runs is chosen per boot by the QEMU fw_cfg entry
# opt/hyper2kvm/renderer (ifupdown, networkmanager, netplan, networkd; none: ifupdown), read
# by a systemd generator that masks the other renderers' services for that boot. netplan's
# own generator is masked and run by ours only when netplan is chosen (its networkd file
# would otherwise shadow networkd's own). NetworkManager reads keyfiles only and makes no
# automatic DHCP profile, as on RHEL 9, so an address it sets comes from the keyfile.
# The marker names the file or profile that configured ens192, and whether the address is
# static or from DHCP, so a renderer that silently fell back to DHCP is seen.
build_debian12_net() {
  local out="$cache/debian12-net.vmdk" t0 root netplan_generator
  variant_cached "$out" && return
  t0=$(now)
  variant_rootfs debian12-net network-manager netplan.io
  cat >"$root/etc/network/interfaces" <<EOF
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

# The primary network interface
allow-hotplug ens192
iface ens192 inet static
    address 10.0.2.15/24
    gateway 10.0.2.2
    hwaddress ether $variant_mac
EOF
  mkdir -p "$root/etc/NetworkManager/system-connections" "$root/etc/NetworkManager/conf.d"
  cat >"$root/etc/NetworkManager/system-connections/ens192.nmconnection" <<EOF
[connection]
id=ens192
uuid=2f0a4b55-3d8e-4c8f-9d7a-7b3c1e9a1f01
type=ethernet
interface-name=ens192
autoconnect=true

[ethernet]
mac-address=${variant_mac^^}

[ipv4]
method=manual
address1=10.0.2.15/24,10.0.2.2

[ipv6]
method=disabled
EOF
  chmod 0600 "$root/etc/NetworkManager/system-connections/ens192.nmconnection"
  cat >"$root/etc/NetworkManager/conf.d/90-keyfile-only.conf" <<'EOF'
[main]
plugins=keyfile
no-auto-default=*
EOF
  cat >"$root/etc/netplan/01-ens192.yaml" <<EOF
network:
  version: 2
  renderer: networkd
  ethernets:
    ens192:
      match:
        macaddress: "$variant_mac"
      set-name: ens192
      addresses: [10.0.2.15/24]
      routes:
        - to: default
          via: 10.0.2.2
EOF
  chmod 0600 "$root/etc/netplan/01-ens192.yaml"
  cat >"$root/etc/systemd/network/20-ens192.network" <<EOF
[Match]
MACAddress=$variant_mac
Name=ens192

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
EOF
  chroot "$root" systemctl enable systemd-networkd.service >"$work/enable.log" 2>&1 \
    || { cat "$work/enable.log" >&2; exit 1; }
  # An absolute link inside the guest: resolved there, not on this host.
  netplan_generator=$(readlink "$root/lib/systemd/system-generators/netplan")
  [ -x "$root$netplan_generator" ] || { echo "build-test-guest: netplan's generator $netplan_generator not found" >&2; exit 1; }
  mkdir -p "$root/etc/systemd/system-generators" "$root/usr/local/lib/hyper2kvm-test/systemd/system-generators"
  ln -sf /dev/null "$root/etc/systemd/system-generators/netplan"
  # netplan's generate acts as a generator only when its argv[0] is under
  # systemd/system-generators/ (called under its own name it writes nothing for networkd).
  ln -sf "$netplan_generator" "$root/usr/local/lib/hyper2kvm-test/systemd/system-generators/netplan"
  cat >"$root/etc/systemd/system-generators/hyper2kvm-test-renderer" <<EOF
#!/bin/sh
# Test guest only: runs the network renderer named by QEMU's fw_cfg entry
# opt/hyper2kvm/renderer for this boot, and masks the others.
modprobe qemu_fw_cfg 2>/dev/null
renderer=\$(cat /sys/firmware/qemu_fw_cfg/by_name/opt/hyper2kvm/renderer/raw 2>/dev/null)
[ -n "\$renderer" ] || renderer=ifupdown
echo "\$renderer" >/run/hyper2kvm-renderer
early="\$2"
ifupdown="networking.service ifup@.service"
nm="NetworkManager.service NetworkManager-wait-online.service"
networkd="systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service"
for unit in \$(case "\$renderer" in
  ifupdown) echo \$nm \$networkd ;;
  networkmanager) echo \$ifupdown \$networkd ;;
  networkd) echo \$ifupdown \$nm ;;
  netplan) echo \$ifupdown \$nm ;;
esac); do ln -sf /dev/null "\$early/\$unit"; done
[ "\$renderer" = netplan ] && exec /usr/local/lib/hyper2kvm-test/systemd/system-generators/netplan "\$@"
exit 0
EOF
  chmod 0755 "$root/etc/systemd/system-generators/hyper2kvm-test-renderer"
  cat >"$root/usr/local/sbin/hyper2kvm-boot-marker" <<'EOF'
#!/bin/sh
renderer=$(cat /run/hyper2kvm-renderer 2>/dev/null || echo unknown)
addr=""
for i in $(seq 1 60); do
  addr=$(ip -4 -o addr show scope global 2>/dev/null \
    | awk '{ kind = "static"; for (i = 5; i <= NF; i++) if ($i == "dynamic") kind = "dhcp"; print $2 "=" $4 "," kind }' | tr '\n' ' ')
  [ -n "$addr" ] && break
  sleep 1
done
case "$renderer" in
  networkd|netplan) via=$(networkctl status ens192 2>/dev/null | sed -n 's/^ *Network File: //p') ;;
  networkmanager) via=$(nmcli -g GENERAL.CONNECTION device show ens192 2>/dev/null) ;;
  ifupdown) [ -e /run/network/ifstate.ens192 ] && via="ifstate:$(cat /run/network/ifstate.ens192)" ;;
esac
echo "HYPER2KVM-NET ${addr:-none} renderer=$renderer via=${via:-none}" >/dev/ttyS0
echo "HYPER2KVM-BOOT-OK" >/dev/ttyS0
EOF
  chmod 0755 "$root/usr/local/sbin/hyper2kvm-boot-marker"
  variant_initramfs_tools
  echo debian12-net >"$root/etc/hostname"
  rm -f "$root/boot/grub/grub.cfg"
  variant_seal
  guestfish <<EOF
sparse $work/disk.img 2G
run
part-init /dev/sda mbr
part-add /dev/sda p 2048 3930111
part-add /dev/sda p 3930112 -2048
part-set-bootable /dev/sda 1 true
mkfs ext4 /dev/sda1
mkswap /dev/sda2
mount /dev/sda1 /
tar-in $work/rootfs.tar /
write /boot/grub/device.map "(hd0) /dev/sda\n"
command "grub-install --target=i386-pc /dev/sda"
command update-grub
EOF
  variant_publish "$out"
  step "debian12-net built in $(elapsed "$t0") s"
}
