import ArgumentParser
import Daemon
import Foundation
import Journal
import Stages

struct Hyper2KVM: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hyper2kvm",
        abstract: "Convert VMware, Hyper-V, raw and AMI virtual machines into KVM guests that boot.",
        discussion: "With --config FILE (repeatable, later wins) runs what the file's `command:` says.",
        version: Hyper2KVMVersion.current,
        subcommands: [RunConfigured.self, Convert.self, Inspect.self, RunDaemon.self, Status.self, History.self, Verify.self,
                      JournalGroup.self, ConfigGroup.self, ListInstances.self, ListCrashPoints.self, InternalGroup.self],
        defaultSubcommand: RunConfigured.self)
}

/// `hyper2kvm --config FILE…`: a subcommand of its own (the default one) so that the
/// root command declares no `--config` that would swallow a subcommand's.
struct RunConfigured: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run what the configuration files' `command:` says (the default).")

    @Option(name: .customLong("config"), help: "Configuration file (YAML); may be given several times, later wins.")
    var configFiles: [String] = []

    func run() async throws {
        guard !configFiles.isEmpty else { throw CleanExit.helpRequest(Hyper2KVM.self) }
        let configuration = try ConfigurationLoader.load(files: configFiles)
        switch configuration.command {
        case nil:
            throw ValidationError("\(configFiles.last ?? "config"): no 'command:' key; say what to run (daemon, convert, …)")
        case .daemon?:
            try await StartRefused.exitingOnRefusal { try await DaemonLauncher.run(configuration) }
        case .some:
            guard let input = configuration.input else { throw ValidationError("no input given") }
            try await ConvertLauncher.run(source: input, configuration: configuration)
        }
    }
}

/// Options every journal-reading command shares: where the journal is.
struct JournalLocation: ParsableArguments {
    @Option(name: .customLong("config"), help: "The configuration the daemon runs with (its state_dir is used).")
    var configFiles: [String] = []

    @Option(name: .customLong("state-dir"), help: "The directory holding the journal.")
    var stateDir: String?

    @Option(name: .customLong("instance"),
            help: "A daemon instance, as `hyper2kvm instances` lists them: NAME reads /etc/hyper2kvm/NAME.yaml, hyper2kvm-NAME.conf or NAME.conf (hyper2kvm: the default instance, hyper2kvm.conf or hyper2kvm.yaml).")
    var instance: String?

    func openJournal() throws -> JobJournal {
        try JobJournal.openForReading(stateDirectory: URL(fileURLWithPath: stateDirectory()))
    }

    func stateDirectory() throws -> String {
        let directory: String
        if let stateDir {
            directory = stateDir
        } else if let instance {
            directory = try InstanceLayout.fromEnvironment().instance(named: instance).stateDirectory()
        } else if !configFiles.isEmpty {
            directory = try ConfigurationLoader.load(files: configFiles).stateDir
        } else {
            directory = Configuration().stateDir
        }
        return directory
    }
}

struct Convert: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert one VM now, through the same journal and stages as the daemon.",
        discussion: "Run the same command again after an interruption: the job resumes at its last completed stage.")

    @Argument(help: "The source: .vmdk .ova .ovf .vhd .vhdx .raw .img .ami .qcow2, or a Hyper-V export folder")
    var source: String

    @Option(name: .customLong("output-dir"), help: "Where the converted VM's directory is published.")
    var outputDir: String?
    @Option(name: .customLong("config"), help: "Configuration file(s) for defaults.")
    var configFiles: [String] = []
    @Option(name: .customLong("state-dir"), help: "Journal directory (default: <output-dir>/.hyper2kvm/state).")
    var stateDir: String?
    @Option(name: .customLong("work-dir"), help: "Scratch directory (default: <output-dir>/.hyper2kvm/work).")
    var workDir: String?
    @Option(name: .customLong("out-format"), help: "qcow2 or raw.")
    var outFormat: String?
    @Flag(help: "zstd-compressed qcow2.")
    var compress = false
    @Flag(name: .customLong("no-checksum"), help: "Do not compute SHA-256 of large outputs.")
    var noChecksum = false
    @Flag(name: .customLong("no-fix"), help: "Copy the disks only; no guest OS changes.")
    var noFix = false
    @Option(name: .customLong("vm-name"), help: "Name of the VM (default: from the source).")
    var vmName: String?
    @Option(help: "Memory in MiB (default: from the source).")
    var memory: Int?
    @Option(help: "vCPUs (default: from the source).")
    var vcpus: Int?
    @Flag(help: "Force UEFI firmware.")
    var uefi = false
    @OptionGroup(title: "libvirt")
    var libvirt: LibvirtOptions
    @Flag(name: .shortAndLong, help: "More log output (repeatable).")
    var verbose: Int

    func run() async throws {
        var configuration = try ConfigurationLoader.load(files: configFiles)
        if let outputDir {
            let base = URL(fileURLWithPath: outputDir).appendingPathComponent(".hyper2kvm").path
            configuration.outputDir = outputDir
            configuration.stateDir = base + "/state"
            configuration.workDir = base + "/work"
        } else if configFiles.isEmpty {
            throw ValidationError("give --output-dir (or --config with output_dir)")
        }
        if let stateDir { configuration.stateDir = stateDir }
        if let workDir { configuration.workDir = workDir }
        if let outFormat {
            guard ["qcow2", "raw"].contains(outFormat) else { throw ValidationError("--out-format must be qcow2 or raw") }
            configuration.conversion.outFormat = outFormat
        }
        if compress { configuration.conversion.compress = true }
        if noChecksum { configuration.conversion.checksum = false }
        if noFix { configuration.conversion.fixGuest = false }
        if let vmName { configuration.conversion.vmName = vmName }
        if let memory { configuration.conversion.vmMemoryMiB = memory }
        if let vcpus { configuration.conversion.vmVcpus = vcpus }
        if uefi { configuration.conversion.vmUEFI = true }
        if verbose > 0 { configuration.verbose = verbose + 1 }
        try libvirt.apply(to: &configuration.conversion)
        try await ConvertLauncher.run(source: source, configuration: configuration)
    }

    /// Registration in libvirt after publishing; each flag overrides the configuration.
    struct LibvirtOptions: ParsableArguments {
        @Flag(name: .customLong("libvirt"), help: "Define the converted VM in libvirt after publishing it.")
        var enabled = false
        @Option(name: .customLong("libvirt-uri"), help: "libvirt connection URI (default: qemu:///system).")
        var uri: String?
        @Option(name: .customLong("libvirt-network"), help: "libvirt network the NICs join (default: default).")
        var network: String?
        @Option(name: .customLong("libvirt-bridge"), help: "Host bridge the NICs join instead of a libvirt network.")
        var bridge: String?
        @Option(name: .customLong("libvirt-pool"), help: "Import the disks into this storage pool (default: use the published files).")
        var pool: String?
        @Flag(name: .customLong("libvirt-autostart"), help: "Start the domain when the host boots.")
        var autostart = false

        func apply(to options: inout ConversionOptions) throws {
            if network != nil && bridge != nil {
                throw ValidationError("--libvirt-network and --libvirt-bridge are mutually exclusive")
            }
            if enabled { options.libvirtIntegration = true }
            if let uri { options.libvirtURI = uri }
            if let network {
                options.libvirtNetwork = network
                options.libvirtBridge = nil
            }
            if let bridge {
                options.libvirtBridge = bridge
                options.libvirtNetwork = "default"
            }
            if let pool { options.libvirtPool = pool }
            if autostart { options.libvirtAutostart = true }
        }
    }
}

struct RunDaemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Watch the queue directory and convert what is dropped into it.")

    @Option(name: .customLong("config"), help: "Configuration file(s).")
    var configFiles: [String] = []
    @Option(name: .customLong("base-dir"), help: "Put queue, output, work and state under this directory.")
    var baseDir: String?
    @Option(name: .customLong("instance"),
            help: "Run instance NAME with its configuration file from /etc/hyper2kvm (what the units run; hyper2kvm: the default instance). Several candidate files are refused.")
    var instance: String?

    func run() async throws {
        guard instance == nil || configFiles.isEmpty else {
            throw ValidationError("give --instance or --config, not both")
        }
        try await StartRefused.exitingOnRefusal {
            let environment = ProcessInfo.processInfo.environment
            var base = baseDir.map { Configuration(baseDirectory: URL(fileURLWithPath: $0).standardizedFileURL.path) } ?? Configuration()
            var configuration: Configuration
            if let instance {
                let daemon = try InstanceLayout.fromEnvironment().instance(named: instance)
                // Under a unit HYPER2KVM_HOME is the instance's home already; by hand it is derived.
                if baseDir == nil && environment["HYPER2KVM_HOME"] == nil { base = Configuration(baseDirectory: daemon.home) }
                configuration = try daemon.configuration(base: base)
                if configuration.sources.isEmpty {
                    FileHandle.standardError.write(Data("hyper2kvm: no configuration file (looked for \(daemon.configCandidates.joined(separator: ", "))): running on the defaults (queue \(configuration.watchDir))\n".utf8))
                }
            } else {
                configuration = try ConfigurationLoader.load(files: configFiles, base: base)
            }
            configuration.command = .daemon
            try await DaemonLauncher.run(configuration)
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show every job in the journal (works while a daemon runs).")
    @OptionGroup var location: JournalLocation
    @Flag(help: "Machine-readable output.")
    var json = false

    func run() async throws {
        let journal = try location.openJournal()
        let jobs = try journal.allJobs()
        // Copies in flight: the disks of each job whose convert stage is running or was cut short.
        var copies: [Int64: [DiskCopyProgress]] = [:]
        for job in jobs where job.stage == "convert" && ![.stageCompleted, .published, .archived, .failed].contains(job.state) {
            let disks = try journal.checkpoints(job: job.id).filter { $0.stage == "convert" }
                .compactMap { DiskCopyProgress.from(name: $0.name, value: $0.value) }
            if !disks.isEmpty { copies[job.id] = disks }
        }
        print(try JournalReports.status(jobs, daemon: journal.latestDaemonRun(), json: json, copies: copies))
    }
}

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one job's transitions, in order, and its artifacts.")
    @Argument(help: "Job id (see `status`).")
    var job: Int64
    @OptionGroup var location: JournalLocation
    @Flag(help: "Machine-readable output.")
    var json = false

    func run() async throws {
        let journal = try location.openJournal()
        guard let record = try journal.job(job) else { throw ValidationError("no job \(job) in \(journal.path)") }
        print(try JournalReports.history(record, journal.history(job: job), artifacts: journal.artifacts(job: job), json: json))
    }
}

struct ConfigGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Configuration tools.", subcommands: [Check.self, Keys.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the effective configuration of FILE… (later wins), or every error in them.")
        @Argument(help: "Configuration files.")
        var files: [String]

        func run() async throws {
            let configuration = try ConfigurationLoader.load(files: files)
            print(EffectiveConfiguration.render(configuration))
        }
    }

    struct Keys: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print every configuration key with its type, default and meaning (the README's table, in markdown).")

        func run() async throws {
            print(ConfigurationReference.markdown())
        }
    }
}

struct ListInstances: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "instances",
        abstract: "List daemon instances (/etc/hyper2kvm/*.yaml and *.conf): unit, configuration, state directory, whether a daemon holds it.")
    @Flag(help: "Machine-readable output.")
    var json = false

    func run() async throws {
        let instances = try InstanceLayout.fromEnvironment().configuredInstances()
        print(try InstanceSummary.render(instances.map(InstanceSummary.survey), json: json))
    }
}

struct ListCrashPoints: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crash-points",
        abstract: "List the named crash points (armed by HYPER2KVM_CRASH_POINT=<name>, for crash tests).",
        shouldDisplay: false)

    func run() async throws {
        print(CrashPoints.all.joined(separator: "\n"))
    }
}

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-hash every recorded artifact; exit non-zero listing each mismatch.")
    @Option(help: "Only this job.")
    var job: Int64?
    @OptionGroup var location: JournalLocation
    @Flag(help: "Machine-readable output.")
    var json = false

    func run() async throws {
        let report = try ArtifactAudit(journal: location.openJournal()).run(jobID: job)
        print(try ArtifactAudit.render(report, json: json))
        if !report.ok { throw ExitCode(1) }
    }
}

struct JournalGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal", abstract: "Read the whole journal, or start a new one.", subcommands: [Replay.self, Export.self, Init.self])

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an empty journal where the old one was lost, on purpose.",
            discussion: "The daemon refuses to start without its journal once it has been used (lock file, job "
                + "directories or published VMs remain), so a lost journal never silently reconverts everything. "
                + "Run this only to start over; VMs already published stay and are not known to the new journal.")
        @OptionGroup var location: JournalLocation

        func run() async throws {
            let directory = try location.stateDirectory()
            try JournalContinuity.initialise(stateDirectory: URL(fileURLWithPath: directory))
            print("created an empty journal in \(directory)")
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print every job's transitions in order.")
        @OptionGroup var location: JournalLocation

        func run() async throws {
            let journal = try location.openJournal()
            for job in try journal.allJobs() {
                print(try JournalReports.history(job, journal.history(job: job.id), artifacts: journal.artifacts(job: job.id), json: false))
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write the journal as JSON lines (jobs, transitions, artifacts).")
        @OptionGroup var location: JournalLocation

        func run() async throws {
            for line in try JournalExport.lines(from: location.openJournal()) { print(line) }
        }
    }
}
