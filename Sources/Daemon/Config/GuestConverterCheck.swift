import Foundation
import Stages

/// Before anything starts: `use_v2v: true` needs virt-v2v on this host. Refused at start,
/// with the install hint, rather than failing every job at its `v2v` stage; refused only
/// then (the tool is not needed with `use_v2v: false` or `fix_guest: false`).
public enum GuestConverterCheck {
    public static func problem(_ configuration: Configuration,
                               environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        guard configuration.conversion.useV2V, configuration.conversion.fixGuest else { return nil }
        if case .failure(let missing) = VirtV2VInPlace.locate(environment: environment) { return missing.description }
        return nil
    }
}
