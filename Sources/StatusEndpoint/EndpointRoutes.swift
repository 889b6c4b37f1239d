import Daemon
import Foundation
import HTTPTypes
import Hummingbird
import Journal
import NIOCore

/// The endpoint's routes. Every answer is built from one reading of the journal, through the
/// same code as `hyper2kvm status --json` and `history --json` (`JournalReports`).
enum EndpointRoutes {
    static func router(state: EndpointState, listen: HTTPListen) -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: HostCheck(listen: listen))
        router.get("/") { _, _ in
            respond(StatusPage.html, type: "text/html; charset=utf-8", extra: [.contentSecurityPolicy: StatusPage.contentSecurityPolicy])
        }
        router.get("/healthz") { _, _ in respond("ok\n", type: "text/plain; charset=utf-8") }
        router.get("/readyz") { _, _ in
            let reading = try state.read()
            let problems = Readiness.problems(state.context, spaces: reading.spaces)
            return respond(problems.isEmpty ? "ready\n" : problems.joined(separator: "\n") + "\n",
                           type: "text/plain; charset=utf-8", status: problems.isEmpty ? .ok : .serviceUnavailable)
        }
        router.get("/metrics") { _, _ in
            _ = try state.read()
            return respond(state.metrics.registry.emitToString(), type: "text/plain; version=0.0.4; charset=utf-8")
        }
        router.get("/api/v1/jobs") { _, _ in
            let journal = state.context.journal
            let text = try JournalReports.status(journal.allJobs(), daemon: journal.latestDaemonRun(), json: true)
            return respond(text, type: "application/json")
        }
        router.get("/api/v1/jobs/:id") { _, context in
            guard let id = context.parameters.get("id", as: Int64.self) else {
                return respond("{\"error\": \"a job id is a number\"}", type: "application/json", status: .badRequest)
            }
            let journal = state.context.journal
            guard let job = try journal.job(id) else {
                return respond("{\"error\": \"no job \(id)\"}", type: "application/json", status: .notFound)
            }
            let text = try JournalReports.history(job, journal.history(job: id), artifacts: journal.artifacts(job: id), json: true)
            return respond(text, type: "application/json")
        }
        router.get("/api/v1/overview") { _, _ in
            let reading = try state.read()
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let data = try encoder.encode(Overview(context: state.context, reading: reading))
            return respond(String(decoding: data, as: UTF8.self), type: "application/json")
        }
        return router
    }

    static func respond(_ text: String, type: String, status: HTTPResponse.Status = .ok,
                        extra: HTTPFields = [:]) -> Response {
        var headers: HTTPFields = [.contentType: type, .cacheControl: "no-store"]
        if let noSniff = HTTPField.Name("X-Content-Type-Options") { headers[noSniff] = "nosniff" }
        headers.append(contentsOf: extra)
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}

/// Refuses a request whose `Host` is not this endpoint's own address (or `localhost`). A web
/// page the operator opens elsewhere could otherwise read the jobs through a DNS name that
/// its attacker points at 127.0.0.1 (DNS rebinding). On a unix socket there is no such name.
struct HostCheck: RouterMiddleware {
    typealias Context = BasicRequestContext
    let listen: HTTPListen

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // Only a loopback address can be reached by rebinding a name to it; an endpoint the
        // operator opened to the network is reached by whatever name the network gives it.
        guard case .tcp(let host, _) = listen, listen.isLocalOnly else { return try await next(request, context) }
        guard let authority = request.head.authority, Self.allowed(authority: authority, listenHost: host) else {
            return EndpointRoutes.respond("forbidden: unexpected Host header\n", type: "text/plain; charset=utf-8", status: .forbidden)
        }
        return try await next(request, context)
    }

    static func allowed(authority: String, listenHost: String) -> Bool {
        var name = Substring(authority)
        if name.hasPrefix("["), let close = name.firstIndex(of: "]") {
            name = name[name.index(after: name.startIndex)..<close]
        } else if let colon = name.lastIndex(of: ":") {
            name = name[..<colon]
        }
        let host = name.lowercased()
        return host == listenHost || host == "localhost" || host == "127.0.0.1" || host == "::1"
    }
}
