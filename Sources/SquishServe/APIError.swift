import NIOCore
import HTTPTypes
import Hummingbird
import SquishEngine
import SquishFormats

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with its HTTP status.
struct APIError: Error, Sendable {
    var status: HTTPResponse.Status
    var message: String
    var type: String
    var param: String?
    var code: String?

    static func invalid(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: .badRequest, message: message, type: "invalid_request_error", param: param, code: code)
    }

    static func wrongType(_ param: String, _ expected: String) -> APIError {
        invalid("'\(param)' must be \(expected)", param: param, code: "invalid_type")
    }

    static let unauthorized = APIError(status: .unauthorized, message: "a valid API key is required: send 'Authorization: Bearer <key>'",
                                       type: "authentication_error", param: nil, code: "invalid_api_key")

    static func notFound(_ path: String) -> APIError {
        APIError(status: .notFound, message: "no such endpoint: \(path)", type: "invalid_request_error", param: nil, code: "not_found")
    }

    static func tooLarge(_ limit: Int) -> APIError {
        APIError(status: .contentTooLarge, message: "the request body is larger than \(limit) bytes", type: "invalid_request_error",
                 param: nil, code: "request_too_large")
    }

    var json: JSONValue {
        .object([("error", .object([
            ("message", .string(message)), ("type", .string(type)),
            ("param", param.map { .string($0) } ?? .null), ("code", code.map { .string($0) } ?? .null),
        ]))])
    }

    var response: Response {
        var r = jsonResponse(json, status: status)
        if status == .unauthorized { r.headers[.wwwAuthenticate] = "Bearer" }
        if status == .tooManyRequests || status == .serviceUnavailable { r.headers[.retryAfter] = "1" }
        return r
    }
}

extension APIError {
    /// The engine's refusals and failures.
    init(_ e: EngineError) {
        switch e {
        case .queueFull:
            self.init(status: .tooManyRequests, message: e.description, type: "server_busy_error", param: nil, code: "queue_full")
        case .shuttingDown:
            self.init(status: .serviceUnavailable, message: e.description, type: "server_unavailable_error", param: nil, code: "shutting_down")
        case .notReady:
            self.init(status: .serviceUnavailable, message: e.description, type: "server_unavailable_error", param: nil, code: "model_not_ready")
        case .contextExceeded:
            self.init(status: .badRequest, message: e.description, type: "invalid_request_error", param: "messages", code: "context_length_exceeded")
        case .invalidRequest(let m):
            self.init(status: .badRequest, message: m, type: "invalid_request_error", param: nil, code: nil)
        case .unknownModel:
            self.init(status: .notFound, message: e.description, type: "invalid_request_error", param: "model", code: "model_not_found")
        case .modelFailed:
            self.init(status: .internalServerError, message: e.description, type: "server_error", param: nil, code: "generation_failed")
        }
    }
}

/// A JSON response (compact, UTF-8).
func jsonResponse(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: "application/json"],
             body: ResponseBody(byteBuffer: ByteBuffer(string: value.serialized)))
}

/// Turns every error (ours, the engine's, the framework's: unknown route, body too large, malformed request) into
/// OpenAI's error shape, so no handler failure reaches the client as a bare 500.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let bodyLimit: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as APIError {
            return e.response
        } catch let e as EngineError {
            return APIError(e).response
        } catch is NIOTooManyBytesError {
            return APIError.tooLarge(bodyLimit).response
        } catch let e as HTTPError {
            if e.status == .notFound { return APIError.notFound(request.uri.path).response }
            if e.status == .contentTooLarge { return APIError.tooLarge(bodyLimit).response }
            let type = e.status.code >= 500 ? "server_error" : "invalid_request_error"
            return APIError(status: e.status, message: e.body ?? e.status.reasonPhrase, type: type, param: nil, code: nil).response
        } catch {
            context.logger.error("unexpected error", metadata: ["error": "\(error)"])
            return APIError(status: .internalServerError, message: "internal error: \(error)", type: "server_error", param: nil, code: nil).response
        }
    }
}
