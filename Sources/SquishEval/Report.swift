import Foundation
import SquishCore

/// `squish eval --report DIR`: results accumulate in DIR/results.json (a rerun of the same model, reference, text
/// and context replaces its entry); each run rewrites report.md, the charts (SVG, and PNG when rsvg-convert or
/// ImageMagick's convert is installed) from all accumulated results. Every file is written atomically.
public enum EvalReport {
    static func short(_ path: String) -> String { (path as NSString).lastPathComponent }

    /// The human-readable result of one model (stdout without --json).
    public static func textSummary(_ r: ModelEvalResult) -> String {
        var lines: [String] = []
        lines.append("model \(short(r.model)) vs reference \(short(r.reference)) on \(r.text) (\(r.textBytes) bytes, \(r.textTokens) tokens)")
        if let kv = r.kvCache, kv != "f32" {
            lines.append(String(format: "  KV cache %@ (reference: f32): %.0f bytes per position", kv, r.kvCacheBytesPerToken ?? 0))
        }
        lines.append(String(format: "  perplexity (llamacpp, ctx %d): %.4f ± %.4f   reference %.4f", r.context, r.perplexity, r.perplexityStderr, r.referencePerplexity))
        lines.append(String(format: "  perplexity (windows):          %.4f            reference %.4f", r.perplexityWindows, r.referencePerplexityWindows))
        lines.append(String(format: "  bits per byte:                 %.4f            reference %.4f", r.bitsPerByte, r.referenceBitsPerByte))
        let k = r.klDivergence
        lines.append(String(format: "  KL divergence: mean %.6f ± %.6f  median %.6f  p99 %.6f  max %.6f  (%d positions, top-%d + %d tail samples)",
                            k.mean, k.meanStderr, k.median, k.p99, k.max, r.klPositions, r.klTopK, r.klTailSamples))
        lines.append(String(format: "  top-1 agreement: %.3f%% ± %.3f%%", r.top1Agreement * 100, r.top1AgreementStderr * 100))
        lines.append(String(format: "  Δp: mean %.3f%%  rms %.3f%%  p1 %.3f%%  p99 %.3f%%", r.deltaP.mean * 100, r.deltaP.rms * 100,
                            r.deltaP.p1 * 100, r.deltaP.p99 * 100))
        for name in r.tasks.keys.sorted() {
            let t = r.tasks[name]!
            var line = String(format: "  %@: %.1f%% [%.1f, %.1f] (%d/%d)", name, t.accuracy * 100, t.interval[0] * 100, t.interval[1] * 100, t.correct, t.total)
            if let ref = r.referenceTasks[name] { line += String(format: "   reference %.1f%%", ref.accuracy * 100) }
            lines.append(line)
            if let cells = t.cells {
                let byLength = RetrievalTask.byLength(t).map { String(format: "%d: %.0f%%", $0.0, $0.1.accuracy * 100) }
                lines.append("    by context length: " + byLength.joined(separator: ", "))
                _ = cells
            }
        }
        lines.append(String(format: "  %.1f s", r.seconds))
        return lines.joined(separator: "\n")
    }

    static func sameRun(_ a: ModelEvalResult, _ b: ModelEvalResult) -> Bool {
        a.model == b.model && a.reference == b.reference && a.text == b.text && a.context == b.context
            && (a.kvCache ?? "f32") == (b.kvCache ?? "f32")
    }

    /// The model's name, with its KV cache when that is not the f32 one.
    static func label(_ r: ModelEvalResult) -> String {
        guard let kv = r.kvCache, kv != "f32" else { return short(r.model) }
        return short(r.model) + " --kv " + kv
    }

    /// Results that no other result of the same model beats on both mean KL and cache bytes per position, by
    /// increasing bytes (the quality-versus-cache-memory front).
    public static func kvFront(_ rows: [ModelEvalResult]) -> [ModelEvalResult] {
        let kv = rows.filter { $0.kvCacheBytesPerToken != nil }
        return kv.filter { r in
            !kv.contains { o in
                o.kvCacheBytesPerToken! <= r.kvCacheBytesPerToken! && o.klDivergence.mean <= r.klDivergence.mean
                    && (o.kvCacheBytesPerToken! < r.kvCacheBytesPerToken! || o.klDivergence.mean < r.klDivergence.mean)
            }
        }.sorted { $0.kvCacheBytesPerToken! < $1.kvCacheBytesPerToken! }
    }

    /// Merges `results` into DIR/results.json and rewrites the report; returns the files written.
    @discardableResult
    public static func write(_ results: [ModelEvalResult], to directory: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let jsonPath = directory + "/results.json"
        var all: [ModelEvalResult] = []
        if let data = FileManager.default.contents(atPath: jsonPath) {
            do {
                all = try JSONDecoder().decode([ModelEvalResult].self, from: data)
            } catch {
                throw EvalError.io(path: jsonPath, reason: "cannot read the accumulated results (\(error)); move the file away to start over")
            }
        }
        for r in results {
            all.removeAll { sameRun($0, r) }
            all.append(r)
        }
        var written: [String] = []
        func put(_ name: String, _ text: String) throws {
            try AtomicFileWriter.write(Array(text.utf8), to: directory + "/" + name)
            written.append(directory + "/" + name)
        }
        try put("results.json", try jsonString(all))
        let charts = self.charts(all)
        for (name, svg) in charts {
            try put(name + ".svg", svg)
            if let png = convertToPNG(svg: directory + "/" + name + ".svg", png: directory + "/" + name + ".png") { written.append(png) }
        }
        try put("report.md", markdown(all, charts: charts.map { $0.0 }))
        return written
    }

    public static func markdown(_ all: [ModelEvalResult], charts: [String]) -> String {
        var s = "# squish eval report\n\n"
        let groups = Dictionary(grouping: all) { "\($0.reference)\u{0}\($0.text)\u{0}\($0.context)" }
        for key in groups.keys.sorted() {
            let rows = groups[key]!.sorted { $0.modelBytes > $1.modelBytes }
            let r0 = rows[0]
            s += "Reference `\(short(r0.reference))` (\(r0.referenceBytes) bytes), text \(r0.text) (\(r0.textBytes) bytes, \(r0.textTokens) tokens), context \(r0.context); KL over \(r0.klPositions) positions with the reference's top-\(r0.klTopK) and \(r0.klTailSamples) tail samples.\n\n"
            let taskNames = Array(Set(rows.flatMap { $0.tasks.keys })).sorted()
            let withKV = rows.contains { ($0.kvCache ?? "f32") != "f32" }
            var header = "| model | MB |" + (withKV ? " KV bytes/position |" : "")
                + " PPL (llamacpp) | PPL (windows) | bits/byte | KL mean | KL median | KL p99 | KL max | top-1 | Δp mean |"
            var rule = "|---|---:|" + (withKV ? "---:|" : "") + "---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            for t in taskNames { header += " \(t) |"; rule += "---:|" }
            s += header + "\n" + rule + "\n"
            var refRow = String(format: "| %@ (reference) | %.1f |%@ %.4f | %.4f | %.4f | 0 | 0 | 0 | 0 | 100%% | 0 |", short(r0.reference),
                                Double(r0.referenceBytes) / 1e6, withKV ? " f32 |" : "", r0.referencePerplexity,
                                r0.referencePerplexityWindows, r0.referenceBitsPerByte)
            for t in taskNames {
                if let a = r0.referenceTasks[t] { refRow += String(format: " %.1f%% [%.1f, %.1f] |", a.accuracy * 100, a.interval[0] * 100, a.interval[1] * 100) } else { refRow += " |" }
            }
            s += refRow + "\n"
            for r in rows {
                let kvColumn = withKV ? String(format: " %.0f |", r.kvCacheBytesPerToken ?? 0) : ""
                var row = String(format: "| %@ | %.1f |%@ %.4f ± %.4f | %.4f | %.4f | %.5f | %.5f | %.4f | %.3f | %.2f%% | %.3f%% |", label(r),
                                 Double(r.modelBytes) / 1e6, kvColumn, r.perplexity, r.perplexityStderr, r.perplexityWindows, r.bitsPerByte,
                                 r.klDivergence.mean, r.klDivergence.median, r.klDivergence.p99, r.klDivergence.max,
                                 r.top1Agreement * 100, r.deltaP.mean * 100)
                for t in taskNames {
                    if let a = r.tasks[t] { row += String(format: " %.1f%% [%.1f, %.1f] |", a.accuracy * 100, a.interval[0] * 100, a.interval[1] * 100) } else { row += " |" }
                }
                s += row + "\n"
            }
            s += "\n"
        }
        s += """
        Perplexity: llamacpp = llama-perplexity's protocol (second half of each chunk scored), windows = every token \
        scored once. KL = KL(reference ‖ model) of the next-token distributions, nats per position. Top-1 = both models' \
        most likely token agree. Δp = p_model(correct) − p_reference(correct). Task accuracies with 95% Wilson intervals.


        """
        for c in charts { s += "![\(c)](\(c).svg)\n\n" }
        return s
    }

    public static func charts(_ all: [ModelEvalResult]) -> [(String, String)] {
        var out: [(String, String)] = []
        // One series per reference/text/context group, points = models by size.
        let groups = Dictionary(grouping: all) { "\(short($0.reference)) / \($0.text.prefix(24))" }
        let keys = groups.keys.sorted()
        func sizeChart(_ title: String, _ y: String, _ value: (ModelEvalResult) -> Double, includeReference: ((ModelEvalResult) -> Double)?) -> String {
            var series: [SVGChart.Series] = []
            var labels: [[String]] = []
            for k in keys {
                var rows = groups[k]!.map { (Double($0.modelBytes) / 1e6, value($0), short($0.model)) }
                if let includeReference, let r0 = groups[k]!.first {
                    rows.append((Double(r0.referenceBytes) / 1e6, includeReference(r0), short(r0.reference)))
                }
                rows.sort { $0.0 < $1.0 }
                series.append(SVGChart.Series(name: k, points: rows.map { (x: $0.0, y: $0.1) }))
                labels.append(rows.map { $0.2 })
            }
            var chart = SVGChart(title: title, xLabel: "model size (MB)", yLabel: y, series: series)
            chart.pointLabels = labels
            return chart.render()
        }
        out.append(("kl_by_size", sizeChart("KL divergence vs reference, by model size", "mean KL (nats/token)", { $0.klDivergence.mean },
                                            includeReference: { _ in 0 })))
        out.append(("perplexity_by_size", sizeChart("Perplexity (llama.cpp protocol) by model size", "perplexity", { $0.perplexity },
                                                    includeReference: { $0.referencePerplexity })))
        // KV caches: mean KL against cache bytes per position, per model; the front joins the undominated ones.
        let cached = all.filter { ($0.kvCache ?? "f32") != "f32" && $0.kvCacheBytesPerToken != nil }
        if !cached.isEmpty {
            var series: [SVGChart.Series] = [], labels: [[String]] = []
            for (model, rows) in Dictionary(grouping: cached, by: { short($0.model) }).sorted(by: { $0.key < $1.key }) {
                let points = rows.sorted { $0.kvCacheBytesPerToken! < $1.kvCacheBytesPerToken! }
                series.append(SVGChart.Series(name: model, points: points.map { (x: $0.kvCacheBytesPerToken!, y: $0.klDivergence.mean) },
                                              connected: false))
                labels.append(points.map { $0.kvCache! })
                let front = kvFront(rows)
                series.append(SVGChart.Series(name: model + " front", points: front.map { (x: $0.kvCacheBytesPerToken!, y: $0.klDivergence.mean) },
                                              radius: 2))
                labels.append(front.map { _ in "" })
            }
            var chart = SVGChart(title: "KV caches: KL divergence vs cache memory", xLabel: "cache bytes per position",
                                 yLabel: "mean KL (nats/token)", series: series)
            chart.pointLabels = labels
            out.append(("kv_front", chart.render()))
        }
        var retrieval: [SVGChart.Series] = []
        var seenReference = Set<String>()
        for r in all {
            if let t = r.tasks[RetrievalTask.name] {
                let pts = RetrievalTask.byLength(t)
                retrieval.append(SVGChart.Series(name: label(r), points: pts.map { (x: Double($0.0), y: $0.1.accuracy) },
                                                 intervals: pts.map { ($0.1.interval[0], $0.1.interval[1]) }))
            }
            if let t = r.referenceTasks[RetrievalTask.name], seenReference.insert(r.reference).inserted {
                let pts = RetrievalTask.byLength(t)
                retrieval.append(SVGChart.Series(name: short(r.reference) + " (ref)", points: pts.map { (x: Double($0.0), y: $0.1.accuracy) }))
            }
        }
        if !retrieval.isEmpty {
            var chart = SVGChart(title: "In-context retrieval accuracy by context length", xLabel: "context (tokens)", yLabel: "accuracy",
                                 series: retrieval)
            chart.logX = true
            chart.yRange = 0 ... 1
            out.append(("retrieval_by_length", chart.render()))
        }
        return out
    }

    /// Converts an SVG file to PNG with rsvg-convert or ImageMagick when one is installed (atomically: into a
    /// temporary name, then renamed). Returns the PNG path, or nil.
    @discardableResult public static func convertToPNG(svg: String, png: String) -> String? {
        let temp = (png as NSString).deletingLastPathComponent + "/." + (png as NSString).lastPathComponent + ".tmp.png"
        let candidates: [[String]] = [["rsvg-convert", "-o", temp, svg], ["convert", svg, temp]]
        for argv in candidates {
            guard let tool = findExecutable(argv[0]) else { continue }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tool)
            p.arguments = Array(argv.dropFirst())
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            do { try p.run() } catch { continue }
            p.waitUntilExit()
            if p.terminationStatus == 0, FileManager.default.fileExists(atPath: temp), rename(temp, png) == 0 { return png }
            try? FileManager.default.removeItem(atPath: temp)
        }
        return nil
    }

    static func findExecutable(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }
}
