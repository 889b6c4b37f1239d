import TestSupport
import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// Phony guests (guestfish-made, no libc) of the distributions we cannot boot here, each laid
/// out as its installer leaves it on VMware, with the files in each distribution's own formats:
///
/// - `rhel9`: MBR; sda1 XFS /boot; sda2 LVM `rhel` (root XFS, swap). grub2 with `blscfg`, a BLS
///   entry with `options root=/dev/mapper/rhel-root …` and `initrd … $tuned_initrd`, the
///   initramfs as `/boot/initramfs-<v>.img` (dracut), NetworkManager keyfile bound to the
///   VMware MAC, SELinux enforcing, LVM's `system.devices` naming the VMware disk.
/// - `rhel8`: MBR; sda1 XFS /boot, sda2 XFS /, sda3 swap, named by UUID in fstab. BLS entries
///   say `options $kernelopts $tuned_params`, and grubenv's `kernelopts` names root as
///   `/dev/sda2` (as an administrator's grub2-editenv left it); ifcfg-ens192 with HWADDR;
///   SELinux permissive.
/// - `sles15`: GPT; sdb1 BIOS boot, sdb2 btrfs with snapper's layout (default subvolume
///   `@/.snapshots/1/snapshot`, `@/var`, `@/home`, `@/.snapshots`), sdb3 swap. fstab and
///   `resume=` name the disk by its VMware SCSI by-id link (YaST's "mount by device ID");
///   dracut writes `/boot/initrd-<v>`; wicked's ifcfg-eth0; a 70-persistent-net.rules that
///   binds eth0 to the vmxnet3 MAC.
/// - `ubuntu2204`: GPT as subiquity partitions a BIOS VM with LVM: sdd1 BIOS boot, sdd2 ext4
///   /boot, sdd3 the PV of `ubuntu-vg` (`ubuntu-lv` ext4 /). fstab as curtin writes it (root
///   by its `dm-uuid-LVM-<vg uuid><lv uuid>` link, /boot by-uuid, `/swap.img`); grub.cfg
///   loads `/vmlinuz-<v>` with `root=/dev/mapper/ubuntu--vg-ubuntu--lv`; the cloud image's
///   `/etc/default/grub.d/50-cloudimg-settings.cfg`; netplan rendered by cloud-init
///   (`50-cloud-init.yaml`, `match: macaddress` with `set-name`); initramfs-tools.
///
/// Built together in one guestfish session and cached under a versioned directory.
enum DistroPhonyGuests {
    static let names = ["rhel9", "rhel8", "sles15", "ubuntu2204"]

    static let rhel9Kernel = "5.14.0-362.8.1.el9_3.x86_64"
    static let rhel8Kernel = "4.18.0-513.5.1.el8_9.x86_64"
    static let slesKernel = "5.14.21-150500.55.39-default"
    static let ubuntuKernel = "5.15.0-91-generic"
    static let ubuntuBootUUID = "1d1d1d1d-2204-4aaa-8bbb-000000002202"

    static let rhel9BootUUID = "1a1a1a1a-9999-4aaa-8bbb-000000000091"
    static let rhel8BootUUID = "1b1b1b1b-8888-4aaa-8bbb-000000000081"
    static let rhel8RootUUID = "1b1b1b1b-8888-4aaa-8bbb-000000000082"
    static let rhel8SwapUUID = "1b1b1b1b-8888-4aaa-8bbb-000000000083"
    static let slesRootUUID = "1c1c1c1c-1515-4aaa-8bbb-000000000152"
    static let slesSwapUUID = "1c1c1c1c-1515-4aaa-8bbb-000000000153"
    /// The by-id name a VMware PVSCSI disk has (`scsi-3` + its NAA WWN), which virtio-blk does not.
    static let slesDiskByID = "/dev/disk/by-id/scsi-36000c29d5c3b7f1e8a2b4c6d8e0f1a2b"
    static let vmwareMAC = "00:50:56:8a:12:34"

    static var directory: URL { GuestFixTestGuests.cacheDirectory.appendingPathComponent("distro-phony-v2") }

    static func image(_ name: String) async throws -> URL {
        try await ensureBuilt()
        return directory.appendingPathComponent("\(name).img")
    }

    static func files() -> [String: String] {
        [
            // RHEL 9
            "rhel9-os-release": """
                NAME="Red Hat Enterprise Linux"
                VERSION="9.3 (Plow)"
                ID="rhel"
                ID_LIKE="fedora"
                VERSION_ID="9.3"
                PLATFORM_ID="platform:el9"
                PRETTY_NAME="Red Hat Enterprise Linux 9.3 (Plow)"
                ANSI_COLOR="0;31"
                CPE_NAME="cpe:/o:redhat:enterprise_linux:9::baseos"

                """,
            "rhel9-release": "Red Hat Enterprise Linux release 9.3 (Plow)\n",
            "rhel9-fstab": """

                #
                # /etc/fstab
                # Created by anaconda on Tue Nov 14 10:12:44 2023
                #
                /dev/mapper/rhel-root   /                       xfs     defaults        0 0
                UUID=\(rhel9BootUUID) /boot                   xfs     defaults        0 0
                /dev/mapper/rhel-swap   none                    swap    defaults        0 0

                """,
            "rhel9-default-grub": """
                GRUB_TIMEOUT=5
                GRUB_DISTRIBUTOR="$(sed 's, release .*$,,g' /etc/system-release)"
                GRUB_DEFAULT=saved
                GRUB_DISABLE_SUBMENU=true
                GRUB_TERMINAL_OUTPUT="console"
                GRUB_CMDLINE_LINUX="crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap rhgb quiet"
                GRUB_DISABLE_RECOVERY="true"
                GRUB_ENABLE_BLSCFG=true

                """,
            "rhel9-grub-cfg": """
                set pager=1
                if [ -f ${config_directory}/grubenv ]; then
                  load_env -f ${config_directory}/grubenv
                fi
                insmod part_msdos
                insmod xfs
                search --no-floppy --fs-uuid --set=root \(rhel9BootUUID)
                insmod blscfg
                blscfg

                """,
            "rhel9-bls": """
                title Red Hat Enterprise Linux (\(rhel9Kernel)) 9.3 (Plow)
                version \(rhel9Kernel)
                linux /vmlinuz-\(rhel9Kernel)
                initrd /initramfs-\(rhel9Kernel).img $tuned_initrd
                options root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap rhgb quiet
                grub_users $grub_users
                grub_arg --unrestricted
                grub_class rhel

                """,
            "rhel9-nmconnection": """
                [connection]
                id=ens192
                uuid=5fb06bd0-0bb0-7ffb-45f1-d6edd65f3e03
                type=ethernet
                interface-name=ens192

                [ethernet]
                mac-address=00:50:56:8A:12:34

                [ipv4]
                address1=192.168.10.21/24,192.168.10.1
                dns=192.168.10.1;
                method=manual

                [ipv6]
                addr-gen-mode=eui64
                method=auto

                [proxy]

                """,
            "rhel9-system-devices": """
                # LVM uses devices listed in this file.
                # Created by LVM command vgimportdevices pid 1187 at Tue Nov 14 10:12:44 2023
                VERSION=1.1.1
                IDTYPE=sys_wwid IDNAME=naa.6000c29a1b2c3d4e5f60718293a4b5c6 DEVNAME=/dev/sda2 PVID=pUxo1rN2b3T4c5D6e7F8g9H0i1J2k3L4 PART=2

                """,
            "selinux-enforcing": "# This file controls the state of SELinux on the system.\nSELINUX=enforcing\nSELINUXTYPE=targeted\n",
            // RHEL 8
            "rhel8-os-release": """
                NAME="Red Hat Enterprise Linux"
                VERSION="8.9 (Ootpa)"
                ID="rhel"
                ID_LIKE="fedora"
                VERSION_ID="8.9"
                PLATFORM_ID="platform:el8"
                PRETTY_NAME="Red Hat Enterprise Linux 8.9 (Ootpa)"
                ANSI_COLOR="0;31"

                """,
            "rhel8-release": "Red Hat Enterprise Linux release 8.9 (Ootpa)\n",
            "rhel8-fstab": """
                UUID=\(rhel8RootUUID) /                       xfs     defaults        0 0
                UUID=\(rhel8BootUUID) /boot                   xfs     defaults        0 0
                UUID=\(rhel8SwapUUID) none                    swap    defaults        0 0

                """,
            "rhel8-default-grub": """
                GRUB_TIMEOUT=5
                GRUB_DEFAULT=saved
                GRUB_DISABLE_SUBMENU=true
                GRUB_TERMINAL_OUTPUT="console"
                GRUB_CMDLINE_LINUX="crashkernel=auto resume=UUID=\(rhel8SwapUUID) rhgb quiet"
                GRUB_DISABLE_RECOVERY="true"
                GRUB_ENABLE_BLSCFG=true

                """,
            "rhel8-grub-cfg": "search --no-floppy --fs-uuid --set=root \(rhel8BootUUID)\ninsmod blscfg\nblscfg\n",
            "rhel8-bls": """
                title Red Hat Enterprise Linux (\(rhel8Kernel)) 8.9 (Ootpa)
                version \(rhel8Kernel)
                linux /vmlinuz-\(rhel8Kernel)
                initrd /initramfs-\(rhel8Kernel).img $tuned_initrd
                options $kernelopts $tuned_params
                id rhel-20231107120000-\(rhel8Kernel)
                grub_users $grub_users
                grub_arg --unrestricted
                grub_class kernel

                """,
            "rhel8-grubenv": grubenv([
                "saved_entry=9f2e7c1b0a4d4e5f8a6b7c8d9e0f1a2b-\(rhel8Kernel)",
                "kernelopts=root=/dev/sda2 ro crashkernel=auto resume=UUID=\(rhel8SwapUUID) rhgb quiet ",
                "boot_success=0",
            ]),
            "rhel8-ifcfg": """
                TYPE=Ethernet
                PROXY_METHOD=none
                BROWSER_ONLY=no
                BOOTPROTO=none
                DEFROUTE=yes
                IPV4_FAILURE_FATAL=no
                NAME=ens192
                UUID=2d0e5c1a-7b3f-4e8a-9c6d-1f2a3b4c5d6e
                DEVICE=ens192
                ONBOOT=yes
                IPADDR=192.168.10.22
                PREFIX=24
                GATEWAY=192.168.10.1
                HWADDR=00:50:56:8A:12:34

                """,
            // SLES 15
            "sles-os-release": """
                NAME="SLES"
                VERSION="15-SP5"
                VERSION_ID="15.5"
                PRETTY_NAME="SUSE Linux Enterprise Server 15 SP5"
                ID="sles"
                ID_LIKE="suse"
                ANSI_COLOR="0;32"
                CPE_NAME="cpe:/o:suse:sles:15:sp5"

                """,
            "sles-fstab": """
                \(slesDiskByID)-part2  /            btrfs  defaults              0  0
                \(slesDiskByID)-part2  /var         btrfs  subvol=/@/var         0  0
                \(slesDiskByID)-part2  /home        btrfs  subvol=/@/home        0  0
                \(slesDiskByID)-part2  /.snapshots  btrfs  subvol=/@/.snapshots  0  0
                \(slesDiskByID)-part3  swap         swap   defaults              0  0

                """,
            "sles-default-grub": """
                GRUB_DISTRIBUTOR=
                GRUB_DEFAULT=saved
                GRUB_TIMEOUT=8
                GRUB_CMDLINE_LINUX_DEFAULT="splash=silent resume=\(slesDiskByID)-part3 preempt=full quiet security=apparmor mitigations=auto"
                GRUB_CMDLINE_LINUX=""
                GRUB_TERMINAL="gfxterm"
                SUSE_BTRFS_SNAPSHOT_BOOTING="true"

                """,
            "sles-grub-cfg": """
                set default="${saved_entry}"
                menuentry 'SLES 15-SP5' --class sles --class gnu-linux --class gnu --class os {
                	load_video
                	set gfxpayload=keep
                	insmod gzio
                	insmod part_gpt
                	insmod btrfs
                	search --no-floppy --fs-uuid --set=root \(slesRootUUID)
                	echo	'Loading Linux \(slesKernel) ...'
                	linux	/boot/vmlinuz-\(slesKernel) root=UUID=\(slesRootUUID) ${extra_cmdline} splash=silent resume=\(slesDiskByID)-part3 preempt=full quiet security=apparmor mitigations=auto
                	echo	'Loading initial ramdisk ...'
                	initrd	/boot/initrd-\(slesKernel)
                }

                """,
            "sles-ifcfg": "BOOTPROTO='static'\nSTARTMODE='auto'\nIPADDR='192.168.10.23/24'\nZONE=''\n",
            "sles-persistent-net": """
                # This file was automatically generated by the /usr/lib/udev/write_net_rules
                # program, run by the persistent-net-generator.rules rules file.
                #
                # You can modify it, as long as you keep each rule on a single line,
                # and change only the value of the NAME= key.

                # PCI device 0x15ad:0x07b0 (vmxnet3)
                SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", ATTR{address}=="\(vmwareMAC)", ATTR{dev_id}=="0x0", ATTR{type}=="1", KERNEL=="eth*", NAME="eth0"

                """,
            // Ubuntu 22.04
            "ubuntu-os-release": """
                PRETTY_NAME="Ubuntu 22.04.3 LTS"
                NAME="Ubuntu"
                VERSION_ID="22.04"
                VERSION="22.04.3 LTS (Jammy Jellyfish)"
                VERSION_CODENAME=jammy
                ID=ubuntu
                ID_LIKE=debian
                HOME_URL="https://www.ubuntu.com/"
                SUPPORT_URL="https://help.ubuntu.com/"
                BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
                PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
                UBUNTU_CODENAME=jammy

                """,
            "ubuntu-lsb-release": "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\nDISTRIB_CODENAME=jammy\nDISTRIB_DESCRIPTION=\"Ubuntu 22.04.3 LTS\"\n",
            "ubuntu-default-grub": """
                # If you change this file, run 'update-grub' afterwards to update
                # /boot/grub/grub.cfg.
                # For full documentation of the options in this file, see:
                #   info -f grub -n 'Simple configuration'

                GRUB_DEFAULT=0
                GRUB_TIMEOUT_STYLE=hidden
                GRUB_TIMEOUT=0
                GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
                GRUB_CMDLINE_LINUX_DEFAULT=""
                GRUB_CMDLINE_LINUX=""

                """,
            "ubuntu-cloudimg-grub": """
                # Cloud Image specific Grub settings for Generic Cloud Images
                # CLOUD_IMG: This file was created/modified by the Cloud Image build process

                # Set the recordfail timeout
                GRUB_RECORDFAIL_TIMEOUT=0

                # Do not wait on grub prompt
                GRUB_TIMEOUT=0

                # Set the default commandline
                GRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0"

                # Set the grub console type
                GRUB_TERMINAL=console

                """,
            "ubuntu-grub-cfg": """
                set default="0"
                function load_video {
                  insmod all_video
                }
                menuentry 'Ubuntu' --class ubuntu --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-simple' {
                	recordfail
                	load_video
                	gfxmode $linux_gfx_mode
                	insmod gzio
                	insmod part_gpt
                	insmod ext2
                	search --no-floppy --fs-uuid --set=root \(ubuntuBootUUID)
                	linux	/vmlinuz-\(ubuntuKernel) root=/dev/mapper/ubuntu--vg-ubuntu--lv ro console=tty1 console=ttyS0
                	initrd	/initrd.img-\(ubuntuKernel)
                }

                """,
            "ubuntu-netplan": """
                # This file is generated from information provided by the datasource.  Changes
                # to it will not persist across an instance reboot.  To disable cloud-init's
                # network configuration capabilities, write a file
                # /etc/cloud/cloud.cfg.d/99-disable-network-config.cfg with the following:
                # network: {config: disabled}
                network:
                    ethernets:
                        ens192:
                            addresses:
                            - 192.168.10.24/24
                            match:
                                macaddress: 00:50:56:8a:12:34
                            nameservers:
                                addresses:
                                - 192.168.10.1
                                search: []
                            routes:
                            -   to: default
                                via: 192.168.10.1
                            set-name: ens192
                    version: 2

                """,
            "ubuntu-cloud-cfg": """
                # The top level settings are used as module
                # and base configuration.
                users:
                   - default
                disable_root: true
                preserve_hostname: false
                datasource_list: [ VMware, OVF, None ]

                """,
            // curtin's fstab; the root's dm-uuid link is filled in by `ubuntu-fstab.sh` once the LVs exist.
            "ubuntu-fstab.sh": """
                vg=$(tr -d -- '-\\n' < "$1/ubuntu-vguuid"); lv=$(tr -d -- '-\\n' < "$1/ubuntu-lvuuid")
                cat > "$1/ubuntu-fstab" <<END
                # /etc/fstab: static file system information.
                #
                # Use 'blkid' to print the universally unique identifier for a
                # device; this may be used with UUID= as a more robust way to name devices
                # that works even if disks are added and removed. See fstab(5).
                #
                # <file system> <mount point>   <type>  <options>       <dump>  <pass>
                # / was on /dev/ubuntu-vg/ubuntu-lv during curtin installation
                /dev/disk/by-id/dm-uuid-LVM-$vg$lv / ext4 defaults 0 1
                # /boot was on /dev/sda2 during curtin installation
                /dev/disk/by-uuid/\(ubuntuBootUUID) /boot ext4 defaults 0 1
                /swap.img	none	swap	sw	0	0
                END
                echo "upload $1/ubuntu-fstab /etc/fstab"

                """,
        ]
    }

    /// grub's environment block as grub2-editenv writes it: 1024 bytes, `#`-padded.
    static func grubenv(_ variables: [String]) -> String {
        let body = GrubEnvironmentBlock.header + variables.map { $0 + "\n" }.joined()
        return body + String(repeating: "#", count: max(0, 1024 - body.utf8.count))
    }

    private static func ensureBuilt() async throws {
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("done").path) { return }
        GuestFixTestGuests.configureLibguestfsForTests()
        let scratch = try Scratch("distro-phony-guests")
        let work = scratch.url
        for (name, content) in files() { try content.write(to: work.appendingPathComponent(name), atomically: true, encoding: .utf8) }
        let initramfs = try await BootChainTestGuests.makeInitramfs("vmware-initrd.img", modules: BootChainTestGuests.vmwareModules, in: work)
        let modulesDep = work.appendingPathComponent("modules.dep")
        try BootChainTestGuests.modulesDep.write(to: modulesDep, atomically: true, encoding: .utf8)

        func upload(_ file: String, _ path: String) -> String { "upload \(work.path)/\(file) \(path)\n" }
        func kernel(_ version: String, image: String) -> String {
            "mkdir-p /lib/modules/\(version)/kernel/drivers/block\n" + upload("modules.dep", "/lib/modules/\(version)/modules.dep")
                + "write /lib/modules/\(version)/modules.builtin \"kernel/drivers/ata/libata.ko\\n\"\n"
                + "write /boot/vmlinuz-\(version) \"phony kernel\"\nupload \(initramfs.path) \(image)\n"
        }
        let common = "mkdir-p /etc/default\nmkdir-p /bin\nmkdir-p /usr/bin\nmkdir-p /var/lib/rpm\nmkdir-p /boot\n"
            + "upload /bin/ls /bin/ls\nchmod 0755 /bin/ls\nwrite /usr/bin/dracut \"#!/bin/sh\\n\"\nchmod 0755 /usr/bin/dracut\n"
            + "mkdir-p /etc/dracut.conf.d\nmkdir-p /etc/selinux\n"
        let mbrCode = "pwrite-device /dev/DISK \"phony boot code\" 0\n"
        var script = "launch\n"
        // rhel9 (sda): sda1 XFS /boot, sda2 LVM rhel/{root,swap}.
        script += "part-init /dev/sda mbr\npart-add /dev/sda p 2048 657407\npart-add /dev/sda p 657408 -2048\npart-set-mbr-id /dev/sda 2 0x8e\n"
        script += mbrCode.replacingOccurrences(of: "DISK", with: "sda")
        script += "mkfs xfs /dev/sda1\nset-uuid /dev/sda1 \(rhel9BootUUID)\npvcreate /dev/sda2\nvgcreate rhel /dev/sda2\n"
        script += "lvcreate root rhel 600\nlvcreate swap rhel 32\nmkfs xfs /dev/rhel/root\nmkswap /dev/rhel/swap\n"
        script += "mount /dev/rhel/root /\n" + common + "mkdir-p /boot\nmount /dev/sda1 /boot\n"
        script += upload("rhel9-os-release", "/etc/os-release") + upload("rhel9-release", "/etc/redhat-release")
        script += "write /etc/hostname \"rhel9-vm\\n\"\n" + upload("rhel9-fstab", "/etc/fstab") + upload("rhel9-default-grub", "/etc/default/grub")
        script += "mkdir-p /boot/grub2\n" + upload("rhel9-grub-cfg", "/boot/grub2/grub.cfg")
        script += Self.grubenvCommand(work: work, name: "rhel9-grubenv", variables: ["saved_entry=3b4c5d6e7f8091a2b3c4d5e6f7081920-\(rhel9Kernel)", "boot_success=0"], into: "/boot/grub2/grubenv")
        script += "mkdir-p /boot/loader/entries\n" + upload("rhel9-bls", "/boot/loader/entries/3b4c5d6e7f8091a2b3c4d5e6f7081920-\(rhel9Kernel).conf")
        script += kernel(rhel9Kernel, image: "/boot/initramfs-\(rhel9Kernel).img")
        script += "mkdir-p /etc/NetworkManager/system-connections\n" + upload("rhel9-nmconnection", "/etc/NetworkManager/system-connections/ens192.nmconnection")
        script += "chmod 0600 /etc/NetworkManager/system-connections/ens192.nmconnection\n"
        script += "mkdir-p /etc/lvm/devices\n" + upload("rhel9-system-devices", "/etc/lvm/devices/system.devices")
        script += upload("selinux-enforcing", "/etc/selinux/config") + "mkdir-p /etc/selinux/targeted/contexts/files\n"
        script += "umount-all\n"
        // rhel8 (sdb): sdb1 XFS /boot, sdb2 XFS /, sdb3 swap, by UUID.
        script += "part-init /dev/sdb mbr\npart-add /dev/sdb p 2048 657407\npart-add /dev/sdb p 657408 1435647\npart-add /dev/sdb p 1435648 -2048\n"
        script += mbrCode.replacingOccurrences(of: "DISK", with: "sdb")
        script += "mkfs xfs /dev/sdb1\nset-uuid /dev/sdb1 \(rhel8BootUUID)\nmkfs xfs /dev/sdb2\nset-uuid /dev/sdb2 \(rhel8RootUUID)\n"
        script += "mkswap-U \(rhel8SwapUUID) /dev/sdb3\n"
        script += "mount /dev/sdb2 /\n" + common + "mount /dev/sdb1 /boot\n"
        script += upload("rhel8-os-release", "/etc/os-release") + upload("rhel8-release", "/etc/redhat-release")
        script += "write /etc/hostname \"rhel8-vm\\n\"\n" + upload("rhel8-fstab", "/etc/fstab") + upload("rhel8-default-grub", "/etc/default/grub")
        script += "mkdir-p /boot/grub2\n" + upload("rhel8-grub-cfg", "/boot/grub2/grub.cfg") + upload("rhel8-grubenv", "/boot/grub2/grubenv")
        script += "mkdir-p /boot/loader/entries\n" + upload("rhel8-bls", "/boot/loader/entries/9f2e7c1b0a4d4e5f8a6b7c8d9e0f1a2b-\(rhel8Kernel).conf")
        script += kernel(rhel8Kernel, image: "/boot/initramfs-\(rhel8Kernel).img")
        script += "mkdir-p /etc/sysconfig/network-scripts\n" + upload("rhel8-ifcfg", "/etc/sysconfig/network-scripts/ifcfg-ens192")
        script += "write /etc/selinux/config \"SELINUX=permissive\\nSELINUXTYPE=targeted\\n\"\n"
        script += "umount-all\n"
        // sles15 (sdc): GPT; sdc1 BIOS boot, sdc2 btrfs with snapper's subvolumes, sdc3 swap.
        script += "part-init /dev/sdc gpt\npart-add /dev/sdc p 2048 18431\npart-add /dev/sdc p 18432 1591295\npart-add /dev/sdc p 1591296 -2048\n"
        script += "part-set-gpt-type /dev/sdc 1 21686148-6449-6E6F-744E-656564454649\n"
        script += "mkfs-btrfs /dev/sdc2\nset-uuid /dev/sdc2 \(slesRootUUID)\nmkswap-U \(slesSwapUUID) /dev/sdc3\n"
        // Subvolume ids are given in order from 256: the root snapshot is 258.
        script += "mount /dev/sdc2 /\nbtrfs-subvolume-create /@\nbtrfs-subvolume-create /@/.snapshots\nmkdir /@/.snapshots/1\n"
        script += "btrfs-subvolume-create /@/.snapshots/1/snapshot\nbtrfs-subvolume-create /@/var\nbtrfs-subvolume-create /@/home\n"
        script += "btrfs-subvolume-set-default 258 /\numount-all\nmount /dev/sdc2 /\n" + common
        script += "mkdir-p /var\nmkdir-p /home\nmkdir-p /.snapshots\n"
        script += upload("sles-os-release", "/etc/os-release") + "write /etc/SUSE-brand \"SLE\\nVERSION = 15\\n\"\n"
        script += "write /etc/hostname \"sles15-vm\\n\"\n" + upload("sles-fstab", "/etc/fstab") + upload("sles-default-grub", "/etc/default/grub")
        script += "mkdir-p /boot/grub2\n" + upload("sles-grub-cfg", "/boot/grub2/grub.cfg")
        script += kernel(slesKernel, image: "/boot/initrd-\(slesKernel)")
        script += "mkdir-p /etc/sysconfig/network\n" + upload("sles-ifcfg", "/etc/sysconfig/network/ifcfg-eth0")
        script += "mkdir-p /etc/udev/rules.d\n" + upload("sles-persistent-net", "/etc/udev/rules.d/70-persistent-net.rules")
        script += "umount-all\n"
        // ubuntu2204 (sdd): GPT; sdd1 BIOS boot, sdd2 ext4 /boot, sdd3 LVM ubuntu-vg/ubuntu-lv.
        script += "part-init /dev/sdd gpt\npart-add /dev/sdd p 2048 4095\npart-add /dev/sdd p 4096 413695\npart-add /dev/sdd p 413696 -2048\n"
        script += "part-set-gpt-type /dev/sdd 1 21686148-6449-6E6F-744E-656564454649\n"
        script += "mkfs ext4 /dev/sdd2\nset-uuid /dev/sdd2 \(ubuntuBootUUID)\npvcreate /dev/sdd3\nvgcreate ubuntu-vg /dev/sdd3\n"
        script += "lvcreate ubuntu-lv ubuntu-vg 400\nmkfs ext4 /dev/ubuntu-vg/ubuntu-lv\n"
        script += "vguuid ubuntu-vg | cat > \(work.path)/ubuntu-vguuid\nlvuuid /dev/ubuntu-vg/ubuntu-lv | cat > \(work.path)/ubuntu-lvuuid\n"
        script += "mount /dev/ubuntu-vg/ubuntu-lv /\n" + common.replacingOccurrences(of: "/var/lib/rpm", with: "/var/lib/dpkg")
            .replacingOccurrences(of: "write /usr/bin/dracut \"#!/bin/sh\\n\"\nchmod 0755 /usr/bin/dracut\n", with: "")
        script += "mount /dev/sdd2 /boot\nmkdir-p /usr/sbin\nwrite /usr/sbin/update-initramfs \"#!/bin/sh\\n\"\nchmod 0755 /usr/sbin/update-initramfs\n"
        script += "mkdir-p /etc/initramfs-tools\nwrite /etc/initramfs-tools/modules \"# List of modules\\n\"\nwrite /var/lib/dpkg/status \"\"\n"
        script += upload("ubuntu-os-release", "/etc/os-release") + upload("ubuntu-lsb-release", "/etc/lsb-release")
        script += "write /etc/debian_version \"bookworm/sid\\n\"\nwrite /etc/hostname \"ubuntu2204-vm\\n\"\n"
        script += "<! sh \(work.path)/ubuntu-fstab.sh \(work.path)\n"
        script += upload("ubuntu-default-grub", "/etc/default/grub") + "mkdir-p /etc/default/grub.d\n"
        script += upload("ubuntu-cloudimg-grub", "/etc/default/grub.d/50-cloudimg-settings.cfg")
        script += "mkdir-p /boot/grub\n" + upload("ubuntu-grub-cfg", "/boot/grub/grub.cfg")
        script += kernel(ubuntuKernel, image: "/boot/initrd.img-\(ubuntuKernel)")
        script += "mkdir-p /etc/netplan\n" + upload("ubuntu-netplan", "/etc/netplan/50-cloud-init.yaml")
        script += "mkdir-p /etc/cloud/cloud.cfg.d\n" + upload("ubuntu-cloud-cfg", "/etc/cloud/cloud.cfg")
        script += "write /swap.img \"\"\numount-all\n"
        try await BootChainTestGuests.buildCached(names, size: "1G", script: script, in: work, as: directory)
    }

    private static func grubenvCommand(work: URL, name: String, variables: [String], into path: String) -> String {
        let file = work.appendingPathComponent(name)
        try? grubenv(variables).write(to: file, atomically: true, encoding: .utf8)
        return "upload \(file.path) \(path)\n"
    }
}
