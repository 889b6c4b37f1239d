import Foundation
import Testing
import TestSupport

/// Network identity kept across the conversion, for every network renderer Debian runs:
/// the real Debian 12 network guest (scripts/build-test-guest debian12-net) configures its
/// VMware NIC ens192 with the static address 10.0.2.15/24 (gateway 10.0.2.2) bound to the
/// VMware MAC 00:50:56:8a:12:34, in ifupdown (`hwaddress`), a NetworkManager keyfile
/// (`interface-name`, `mac-address`), netplan (`match: macaddress`, `set-name`) and
/// systemd-networkd (`[Match] MACAddress=`, `Name=`).
///
/// It is packed as an OVA whose NIC has another MAC (00:50:56:aa:bb:cc: what domain.xml
/// gives the VM), converted once, and booted once per renderer on a virtio-net NIC with
/// that MAC on QEMU user-mode networking; the guest picks the renderer for the boot from a
/// fw_cfg entry. Each boot must show the NIC under its old name with its static address
/// (not a DHCP lease, which user-mode networking would also hand out as 10.0.2.15), set
/// from that renderer's own configuration file or profile.
///
/// DHCP guests are the plain debian12 guest (ifupdown `inet dhcp` with `hwaddress`), booted
/// by RealGuestConversionTests and RealGuestHyperVFormatTests with the same name check.
/// NetworkManager's ifcfg-rh plugin is not in Debian's network-manager package, so ifcfg
/// files are covered on phony guests only (StagesTests).
@Suite(.serialized, .guestWorkSlot, .tags(.guest, .boot, .slow), .requiresLibguestfs, .requiresBootTools)
struct RealGuestNetworkIdentityTests {
    struct Renderer {
        let name: String
        /// What the marker's `via=` must contain: the file or profile that configured ens192.
        let configuredBy: String
    }

    static let renderers = [
        Renderer(name: "ifupdown", configuredBy: "via=ifstate:ens192"),
        Renderer(name: "networkmanager", configuredBy: "via=ens192"),
        Renderer(name: "netplan", configuredBy: "via=/run/systemd/network/10-netplan-ens192.network"),
        Renderer(name: "networkd", configuredBy: "via=/etc/systemd/network/20-ens192.network"),
    ]
    static let domainMAC = "00:50:56:aa:bb:cc"

    @Test(.inGuestRotation("net-ifupdown", "net-networkmanager", "net-netplan", "net-networkd"))
    func staticAddressAndNameKeptForEveryRenderer() async throws {
        let start = Date()
        let cached = try await RealGuestBooting.cachedGuest("debian12-net.vmdk", target: "debian12-net")
        let scratch = try Scratch("network-identity")
        try await sh(["qemu-img", "convert", "-f", "vmdk", "-O", "raw", cached, scratch.path("guest.raw")])
        let ova = try await OVABuilder.make(name: "netguest", raw: scratch.path("guest.raw"), in: scratch.url.path, mac: Self.domainMAC)
        try FileManager.default.removeItem(atPath: scratch.path("guest.raw"))

        let conversion = try await RealGuestBooting.convert(ova, name: "netguest", scratch: scratch).get()
        #expect(conversion.domain.mac == Self.domainMAC, "domain.xml must give the OVF's MAC")
        let metadata = try String(contentsOfFile: conversion.directory + "/metadata.json", encoding: .utf8)
        print("network identity: conversion \(String(format: "%.0f", conversion.seconds)) s")

        for renderer in Self.renderers where GuestRotation.runs("net-\(renderer.name)") {
            let boot = try await RealGuestBooting.startBoot(conversion.disk, format: "qcow2", uefi: conversion.domain.uefi,
                                                            mac: conversion.domain.mac, timeout: 600,
                                                            fwCfg: "opt/hyper2kvm/renderer=\(renderer.name)",
                                                            outputDirectory: scratch.path("boot-\(renderer.name)")).wait()
            let net = RealGuestBooting.markerLine("NET", in: boot.out) ?? "(no HYPER2KVM-NET line)"
            print("RENDERER-MATRIX \(renderer.name): boot-test status \(boot.status): \(net)")
            #expect(boot.status == 0, "\(renderer.name): the converted guest did not boot: \(boot.out) \(boot.err)")
            #expect(net.contains("renderer=\(renderer.name)"), "\(renderer.name): the guest ran another renderer: \(net)")
            #expect(net.contains("ens192=10.0.2.15/24,static"),
                    "\(renderer.name): the NIC did not come up as ens192 with its static address: \(net)\nfixes: \(metadata)")
            #expect(net.contains(renderer.configuredBy), "\(renderer.name): ens192 was not configured by \(renderer.configuredBy): \(net)")
        }
        print("network identity: \(String(format: "%.0f", Date().timeIntervalSince(start))) s in all")
    }
}
