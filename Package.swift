// swift-tools-version:6.2
import PackageDescription

let strictConcurrency: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "hyper2kvm",
    // 6.2: swift-service-lifecycle 2.13 declares it. macOS 15: `Synchronization` (Mutex, Atomic).
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "hyper2kvm", targets: ["hyper2kvm"]),
        // The guest fixer the daemon runs as a child: the only program that links libguestfs.
        .executable(name: "hyper2kvm-fix-guest", targets: ["hyper2kvm-fix-guest"]),
        // For the fuzz package under fuzz/ (a separate package, so its sanitizer build stays out of this one).
        .library(name: "Stages", targets: ["Stages"]),
        .library(name: "GuestFix", targets: ["GuestFix"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        // Webhook notifications (HTTP/1.1 and HTTP/2 over TLS, timeouts, connection pooling).
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        // The daemon's HTTP endpoint (/metrics, /healthz, /readyz, /api/v1/jobs, the status page).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries from Debian's -dev packages.
        .systemLibrary(name: "CLibguestfs", pkgConfig: "libguestfs", providers: [.apt(["libguestfs-dev"])]),
        // Linux calls Swift's Glibc module leaves out (memfd_create, renameat2 need _GNU_SOURCE).
        .target(name: "CLinux"),
        // The async-signal-safe crash record the daemon writes when it dies of a fatal signal.
        .target(name: "CCrashRecord"),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),

        // The one copy of the system helpers every module shares: errno/EINTR, durable files,
        // timestamps, JSON values.
        .target(
            name: "SystemSupport",
            dependencies: ["CLinux", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strictConcurrency),
        .target(
            name: "Journal",
            dependencies: ["SystemSupport", .product(name: "GRDB", package: "GRDB.swift"),
                           .product(name: "Metrics", package: "swift-metrics")],
            swiftSettings: strictConcurrency),
        .target(
            name: "Stages",
            dependencies: [
                "COpenSSL", "CLinux", "SystemSupport",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ],
            swiftSettings: strictConcurrency),
        // Everything that calls libguestfs (the Linux and Windows fixers), kept out of Stages so
        // the daemon never links the library: it runs hyper2kvm-fix-guest (IsolatedGuestFixer).
        .target(
            name: "GuestFix",
            dependencies: ["Stages", "CLibguestfs"],
            swiftSettings: strictConcurrency),
        .target(
            name: "Daemon",
            dependencies: [
                "Journal", "Stages", "CCrashRecord", "SystemSupport",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strictConcurrency),
        // The HTTP endpoint, kept out of Daemon so the conversion logic does not depend on a
        // web server: the daemon's service group takes it as one more service.
        .target(
            name: "StatusEndpoint",
            dependencies: [
                "Daemon", "Journal", "Stages", "SystemSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictConcurrency),
        .executableTarget(
            name: "hyper2kvm",
            dependencies: [
                "Daemon", "Journal", "Stages", "StatusEndpoint",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictConcurrency,
            // The daemon idles for days, so what it keeps resident matters. Linked by the
            // toolchain's lld with packed relative relocations (DT_RELR, glibc 2.36+), the
            // 17,500 relative relocations of Swift metadata take 5 KiB instead of 410 KiB,
            // and the loader reads that much less at start: idle RSS is 0.9 MiB lower than
            // with the default gold link (BENCHMARKS.md, issue 16).
            linkerSettings: [.unsafeFlags(["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"])]),
        .executableTarget(
            name: "hyper2kvm-fix-guest",
            dependencies: [
                "GuestFix", "Stages",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictConcurrency),
        // Benchmark drivers live beside the product so `bench/` scripts can build them in release.
        .executableTarget(
            name: "journal-bench",
            dependencies: ["Journal", .product(name: "GRDB", package: "GRDB.swift")],
            path: "bench/journal-bench",
            swiftSettings: strictConcurrency),

        .executableTarget(
            name: "digest-bench",
            dependencies: ["Stages"],
            path: "bench/digest-bench",
            swiftSettings: strictConcurrency),

        .testTarget(name: "SystemSupportTests", dependencies: ["SystemSupport"], swiftSettings: strictConcurrency),
        .testTarget(name: "JournalTests", dependencies: ["Journal", "SystemSupport"], swiftSettings: strictConcurrency),
        .testTarget(name: "StagesTests", dependencies: ["Stages", "GuestFix"], swiftSettings: strictConcurrency),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "Journal", "Stages", "SystemSupport"], swiftSettings: strictConcurrency),
        .testTarget(name: "StatusEndpointTests", dependencies: ["StatusEndpoint", "Daemon", "Journal", "Stages", "SystemSupport"],
                    swiftSettings: strictConcurrency),
    ]
)

// What every test target shares (Tests/TestSupport): scratch directories, the shell runner,
// the product binary, image factories, host conditions and tags. Added to each test target
// here so that a new test target gets it too.
package.targets.append(.target(name: "TestSupport", dependencies: ["Stages"], path: "Tests/TestSupport",
                               swiftSettings: strictConcurrency))
for target in package.targets where target.type == .test { target.dependencies.append("TestSupport") }
