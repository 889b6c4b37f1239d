/// hyper2kvm's version, reported by `--version` and recorded in metadata.json.
public enum Hyper2KVMVersion {
    public static let current = "0.1.0"
}
