import Testing
@testable import GuestFix

/// The decision of ``CloudInitNetworkGuard``; the guard written into a real guest is checked
/// on the Ubuntu phony guest (`DistroPhonyGuestTests`).
@Suite struct CloudInitNetworkGuardTests {
    /// The forms cloud-init's documentation gives for turning its network config off.
    @Test(arguments: [
        "network: {config: disabled}\n",
        "network:\n  config: disabled\n",
        "# comment\nnetwork:\n    config: \"disabled\"\n",
        "network: {\"config\": \"disabled\"}\n",
    ])
    func documentedFormsDisableTheNetworkConfig(text: String) {
        #expect(CloudInitNetworkGuard.disablesNetwork(text))
    }

    @Test(arguments: [
        "# network: {config: disabled}\n",
        "network:\n  version: 2\n  config: disabled\n",
        "datasource_list: [ VMware, None ]\n",
        "",
    ])
    func otherTextDoesNot(text: String) {
        #expect(!CloudInitNetworkGuard.disablesNetwork(text))
    }

    @Test func writtenOnlyWhereCloudInitRenderedTheNetworkAndStillWould() {
        let netplan = ["/etc/netplan/50-cloud-init.yaml"]
        #expect(CloudInitNetworkGuard.decide(cloudInitInstalled: true, rendered: netplan, configs: ["users: []\n"]).write)
        #expect(!CloudInitNetworkGuard.decide(cloudInitInstalled: false, rendered: netplan, configs: []).write)
        #expect(!CloudInitNetworkGuard.decide(cloudInitInstalled: true, rendered: [], configs: []).write)
        let disabled = CloudInitNetworkGuard.decide(cloudInitInstalled: true, rendered: netplan,
                                                    configs: ["users: []\n", "network: {config: disabled}\n"])
        #expect(!disabled.write && disabled.reason.contains("already disabled"))
        #expect(CloudInitNetworkGuard.disablesNetwork(CloudInitNetworkGuard.content))
    }
}
