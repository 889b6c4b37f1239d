// swift-tools-version:6.1
import PackageDescription

// libFuzzer harness for the parsers of untrusted bytes. A package of its own so that the
// main package's `swift build` never sees it: scripts/fuzz builds it with
//   swift build -c release --package-path fuzz --scratch-path .build-fuzz \
//     -Xswiftc -sanitize=fuzzer[,address] -Xswiftc -parse-as-library -Xswiftc -enable-testing
// (-enable-testing lets the harness reach the internal parser types through @testable import).
let package = Package(
    name: "hyper2kvm-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "hyper2kvm", path: "..")],
    targets: [
        .target(name: "CFuzzerDriver"),
        .executableTarget(
            name: "h2k-fuzz",
            dependencies: [
                "CFuzzerDriver",
                .product(name: "Stages", package: "hyper2kvm"),
                // ISO9660Image, which the Windows fixer reads virtio-win with.
                .product(name: "GuestFix", package: "hyper2kvm"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]),
    ]
)
