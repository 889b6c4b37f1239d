/// The letters Linux gives the Nth disk of a bus (`sd`, `vd`): 0 → "a", 25 → "z", 26 → "aa".
/// One copy for the domain XML's target names and the guest fixer's device names, which
/// must agree.
public enum DiskLetters {
    public static func of(_ index: Int) -> String {
        var index = index
        var letters = ""
        repeat {
            letters = String(UnicodeScalar(UInt8(97 + index % 26))) + letters
            index = index / 26 - 1
        } while index >= 0
        return letters
    }
}
