import Foundation
import Testing
import TestSupport
@testable import Daemon

/// The libvirt keys: defaults, values, and the network/bridge exclusion in either order.
@Suite struct LibvirtConfigurationTests {
    func load(_ text: String) throws -> Configuration {
        let scratch = try Scratch("libvirt-config")
        let file = scratch.path("c.yaml")
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return try ConfigurationLoader.load(files: [file])
    }

    func failure(_ text: String) throws -> String {
        do {
            _ = try load(text)
            return ""
        } catch {
            return String(describing: error)
        }
    }

    @Test func defaultsAreOff() throws {
        let options = try load("{}").conversion
        #expect(!options.libvirtIntegration)
        #expect(options.libvirtURI == "qemu:///system")
        #expect(options.libvirtBridge == nil && options.libvirtPool == nil)
        #expect(!options.libvirtAutostart && !options.libvirtOverwrite)
    }

    @Test func everyKeyIsRead() throws {
        let options = try load("""
            libvirt_integration: true
            libvirt_uri: qemu+ssh://root@kvm1/system
            libvirt_bridge: br-vsphere
            libvirt_pool: vsphere-vms
            libvirt_autostart: true
            libvirt_overwrite: true
            """).conversion
        #expect(options.libvirtIntegration && options.libvirtAutostart && options.libvirtOverwrite)
        #expect(options.libvirtURI == "qemu+ssh://root@kvm1/system")
        #expect(options.libvirtBridge == "br-vsphere" && options.libvirtPool == "vsphere-vms")
        #expect(options.libvirtNetwork == "default")
    }

    @Test(arguments: ["libvirt_network: lan\nlibvirt_bridge: br0\n", "libvirt_bridge: br0\nlibvirt_network: lan\n"])
    func networkAndBridgeExcludeEachOther(text: String) throws {
        let message = try failure(text)
        #expect(message.contains("mutually exclusive"), "\(message)")
        #expect(message.contains("br0") && message.contains("lan"))
    }

    @Test func bridgeWithTheDefaultNetworkIsFine() throws {
        #expect(try load("libvirt_network: default\nlibvirt_bridge: br0\n").conversion.libvirtBridge == "br0")
    }

    @Test func wrongTypesAreNamed() throws {
        #expect(try failure("libvirt_integration: maybe\n").contains("key 'libvirt_integration': expected a boolean"))
        #expect(try failure("libvirt_uri: system\n").contains("expected a libvirt URI"))
        #expect(try failure("libvirt_pool: ''\n").contains("expected a storage pool name"))
    }

    @Test func configCheckShowsTheKeys() throws {
        let text = EffectiveConfiguration.render(try load("libvirt_integration: true\nlibvirt_pool: vms\n"))
        #expect(text.contains("libvirt_integration: true"))
        #expect(text.contains("libvirt_uri: qemu:///system"))
        #expect(text.contains("libvirt_pool: vms"))
    }
}
