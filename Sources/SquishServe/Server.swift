import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import SquishEngine
import SquishFormats
import SquishModel

/// Where and how the server listens.
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// 0: any free port (the one chosen is reported to `onListening`).
    public var port = 8080
    /// Required as `Authorization: Bearer <key>` on /v1/ endpoints when set.
    public var apiKey: String?
    /// Larger request bodies are refused with 413.
    public var maxBodyBytes = 8 << 20
    /// After SIGTERM/SIGINT, in-flight requests get this many seconds to finish before they end with an error event.
    public var shutdownGrace = 10.0

    public init() {}
}

/// A model to serve: a path or known model name, and optionally the name requests use.
public struct ModelSpec: Sendable {
    public var reference: String
    public var name: String?
    public init(_ reference: String, name: String? = nil) {
        self.reference = reference
        self.name = name
    }
}

/// The OpenAI-compatible HTTP server over an `Engine`: routes, authentication, metrics, the web page, graceful
/// shutdown on SIGTERM/SIGINT (swift-service-lifecycle).
public struct SquishServer: Sendable {
    public let engine: Engine
    public let configuration: ServerConfiguration
    public let models: [ModelSpec]
    let metrics = ServerMetrics()
    let logger: Logger

    public init(engine: Engine, models: [ModelSpec], configuration: ServerConfiguration, logger: Logger = Logger(label: "squish.serve")) {
        self.engine = engine
        self.models = models
        self.configuration = configuration
        self.logger = logger
    }

    /// Listens, loads the models (the server answers `/health` with 503 meanwhile) and serves until SIGTERM or
    /// SIGINT; then drains and returns. `onListening` gets the bound port.
    public func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: RequestLogMiddleware(logger: logger, metrics: metrics))
        router.add(middleware: ErrorMiddleware(bodyLimit: configuration.maxBodyBytes))
        router.add(middleware: AuthMiddleware(apiKey: configuration.apiKey))
        Routes(engine: engine, configuration: configuration, metrics: metrics, logger: logger).register(on: router)
        var appConfiguration = ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port), serverName: "squish")
        appConfiguration.reuseAddress = true
        let app = Application(router: router, configuration: appConfiguration, onServerRunning: { channel in
            onListening(channel.localAddress?.port ?? 0)
        }, logger: logger)
        let engineService = EngineService(engine: engine, models: models, grace: configuration.shutdownGrace, logger: logger)
        // Shut down in reverse order: the engine first (in-flight requests finish or end with an error event, new
        // ones get 503), then the HTTP server (which then has no stream left to wait for).
        let group = ServiceGroup(configuration: .init(services: [app, engineService], gracefulShutdownSignals: [.sigterm, .sigint],
                                                      logger: logger))
        try await group.run()
    }
}

/// Loads the models when the server starts and drains the engine on graceful shutdown. A model that fails to load
/// stops the server with that error.
struct EngineService: Service {
    let engine: Engine
    let models: [ModelSpec]
    let grace: Double
    let logger: Logger

    func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for m in models {
                group.addTask {
                    let served = try await engine.load(m.reference, as: m.name)
                    logger.info("model ready", metadata: ["model": "\(served.id)", "context": "\(served.context)",
                                                          "parallel": "\(served.options.parallel)"])
                }
            }
            try await group.waitForAll()
        }
        try? await gracefulShutdown()
        logger.info("shutting down", metadata: ["grace_seconds": "\(grace)"])
        await engine.shutdown(grace: grace)
    }
}

/// `Authorization: Bearer <key>` on /v1/ when a key is configured.
struct AuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let apiKey: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let key = apiKey, request.uri.path.hasPrefix("/v1/") || request.uri.path == "/v1" {
            let given = request.headers[.authorization] ?? ""
            guard Self.constantTimeEqual(Array(given.utf8), Array("Bearer \(key)".utf8)) else { throw APIError.unauthorized }
        }
        return try await next(request, context)
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(a.count == b.count ? 0 : 1)
        for i in 0 ..< max(a.count, b.count) { diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0) }
        return diff == 0
    }
}

/// One structured log line per request (method, path, status, milliseconds) and the request metrics.
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = DispatchTime.now().uptimeNanoseconds
        let response = try await next(request, context)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let path = Routes.known.contains(request.uri.path) ? request.uri.path : "other"
        metrics.request(path: path, status: response.status.code, seconds: seconds)
        logger.info("request", metadata: [
            "method": "\(request.method)", "path": "\(request.uri.path)", "status": "\(response.status.code)",
            "ms": "\(String(format: "%.1f", seconds * 1000))",
        ])
        return response
    }
}
