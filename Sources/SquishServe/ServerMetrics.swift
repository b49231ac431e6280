import CoreMetrics
import Foundation
import Prometheus
import Synchronization
import SquishEngine

/// The server's metrics through swift-metrics, kept in a registry of this server's own (no process-wide bootstrap,
/// so several servers, e.g. in tests, do not collide) and rendered for Prometheus at `/metrics`. Engine gauges
/// (queue depth, active sequences, KV bytes) and token totals are read from the engine when scraped.
final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory
    /// Token totals already added to the counters, per model (counters only go up by what is new).
    private let reported = Mutex<[String: ModelStatistics]>([:])

    init() {
        var f = PrometheusMetricsFactory(registry: registry)
        // Seconds: 5 ms ... 60 s for time to first token, 1 ms ... 5 s between tokens.
        f.durationHistogramBuckets = [
            "squish_time_to_first_token_seconds": [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60].map { .milliseconds(Int($0 * 1000)) },
            "squish_token_latency_seconds": [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5].map { .microseconds(Int($0 * 1e6)) },
            "squish_request_duration_seconds": [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120].map { .milliseconds(Int($0 * 1000)) },
        ]
        factory = f
    }

    func request(path: String, status: Int, seconds: Double) {
        Counter(label: "squish_requests_total", dimensions: [("path", path), ("status", String(status))], factory: factory).increment()
        Timer(label: "squish_request_duration_seconds", dimensions: [("path", path)], factory: factory)
            .recordNanoseconds(Int64(seconds * 1e9))
    }

    func firstToken(model: String, seconds: Double) {
        Timer(label: "squish_time_to_first_token_seconds", dimensions: [("model", model)], factory: factory)
            .recordNanoseconds(Int64(seconds * 1e9))
    }

    func tokenLatency(model: String, seconds: Double) {
        Timer(label: "squish_token_latency_seconds", dimensions: [("model", model)], factory: factory)
            .recordNanoseconds(Int64(seconds * 1e9))
    }

    /// Reads the engine's gauges and totals into the registry and renders it (one scrape at a time, so that each
    /// counter grows by exactly what is new).
    func render(engine: Engine) -> [UInt8] {
        reported.withLock { last in
            for (name, status) in engine.models {
                guard case .ready(let m) = status else { continue }
                let s = m.statistics
                let dims = [("model", name)]
                Meter(label: "squish_queue_depth", dimensions: dims, factory: factory).set(s.waiting)
                Meter(label: "squish_active_sequences", dimensions: dims, factory: factory).set(s.active)
                Meter(label: "squish_kv_cache_bytes", dimensions: dims, factory: factory).set(s.kvBytes)
                let before = last[name] ?? ModelStatistics()
                last[name] = s
                func add(_ label: String, _ now: Int, _ then: Int) {
                    Counter(label: label, dimensions: dims, factory: factory).increment(by: max(0, now - then))
                }
                add("squish_prompt_tokens_total", s.promptTokens, before.promptTokens)
                add("squish_cached_prompt_tokens_total", s.cachedPromptTokens, before.cachedPromptTokens)
                add("squish_generated_tokens_total", s.generatedTokens, before.generatedTokens)
                add("squish_batch_steps_total", s.steps, before.steps)
                add("squish_refused_requests_total", s.refusedRequests, before.refusedRequests)
            }
            var out: [UInt8] = []
            registry.emit(into: &out)
            return out
        }
    }
}
