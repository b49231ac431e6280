import Foundation
import SquishCore
import SquishEval
import SquishModel

/// `squish compress --report DIR`: report.md, result.json, heatmap.svg (bits per weight, layers × tensor kinds) and
/// pareto.svg (size against KL on the search tokens: every candidate of the search's last stage, uniform levels,
/// the input and the result), plus PNGs when a converter is installed.
public enum CompressReport {
    static let kinds = LinearKind.allCases.map(\.rawValue)

    public static func write(_ r: CompressResult, to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try AtomicFileWriter.write(Array(heatmap(r).utf8), to: directory + "/heatmap.svg")
        try AtomicFileWriter.write(Array(pareto(r).utf8), to: directory + "/pareto.svg")
        try AtomicFileWriter.write(Array(try jsonString(r).utf8), to: directory + "/result.json")
        try AtomicFileWriter.write(Array(markdown(r).utf8), to: directory + "/report.md")
        for name in ["heatmap", "pareto"] { EvalReport.convertToPNG(svg: directory + "/\(name).svg", png: directory + "/\(name).png") }
    }

    static func mb(_ b: Int) -> String { String(format: "%.2f", Double(b) / 1e6) }

    public static func markdown(_ r: CompressResult) -> String {
        var s = "# squish compress\n\n"
        s += "Input `\((r.input as NSString).lastPathComponent)` → `\((r.output as NSString).lastPathComponent)`\n\n"
        s += "| | value |\n|---|---|\n"
        s += "| file | \(mb(r.bytes)) MB (budget \(mb(r.targetBytes)) MB) |\n"
        s += String(format: "| bits per weight | %.3f (all tensor bytes × 8 / %d parameters) |\n", r.bitsPerWeight, r.parameters)
        if let kl = r.klDivergence, let ppl = r.perplexity, let ref = r.referencePerplexity {
            s += String(format: "| held-out KL (mean) | %.4f on %@ |\n", kl, r.heldOutText ?? "")
            s += String(format: "| held-out perplexity | %.3f (input %.3f) |\n", ppl, ref)
            if let t = r.top1Agreement { s += String(format: "| top-1 agreement | %.1f%% |\n", t * 100) }
        }
        if !r.droppedLayers.isEmpty {
            s += "| dropped blocks | \(r.droppedLayers.map(String.init).joined(separator: ", ")) of \(r.layers.count) |\n"
        }
        s += String(format: "| search KL | start %.5f → %.5f after %d generations (%d forward passes on %d calibration tokens) |\n",
                     r.startFitness, r.searchFitness, r.generations, r.candidatesScored, r.searchTokens)
        s += String(format: "| time | %.0f s (level database %.0f s%@) |\n\n", r.seconds, r.databaseSeconds, r.databaseCached ? ", cached" : "")
        s += "![bits per weight by layer and tensor](heatmap.svg)\n\n![size against KL](pareto.svg)\n\n"
        s += "## Size against KL on the search tokens\n\n| point | MB | KL |\n|---|---|---|\n"
        for c in r.comparisons.sorted(by: { $0.bytes < $1.bytes }) { s += "| \(c.name) | \(mb(c.bytes)) | \(String(format: "%.5f", c.fitness)) |\n" }
        s += "| **result** | \(mb(r.bytes)) | \(String(format: "%.5f", r.searchFitness)) |\n\n"
        s += "## Types by tensor kind\n\n| kind | types (count) |\n|---|---|\n"
        var byKind: [String: [String: Int]] = [:]
        for c in r.choices { byKind[c.kind, default: [:]][c.type, default: 0] += 1 }
        for kind in kinds + [LinearLayer.embeddingKind, LinearLayer.outputKind] {
            guard let m = byKind[kind] else { continue }
            s += "| \(kind) | " + m.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ") + " |\n"
        }
        s += "\n## Importance signals\n\nLayers by how much they change the residual stream (1 − cos(input, output)):\n\n"
        s += "| layer | 1 − cos |\n|---|---|\n"
        for l in r.layers { s += "| \(l.layer) | \(String(format: "%.4f", l.cosineDistance)) |\n" }
        if !r.dropSensitivity.isEmpty {
            s += "\nBlocks by the KL of dropping that one alone (`--prune`):\n\n| layer | KL | dropped |\n|---|---|---|\n"
            for (l, kl) in r.dropSensitivity.enumerated().sorted(by: { $0.element < $1.element }) {
                s += String(format: "| %d | %.5f | %@ |\n", l, kl, r.droppedLayers.contains(l) ? "yes" : "")
            }
        }
        s += "\nThe 15 most sensitive tensors (KL with only that tensor one level down):\n\n| tensor | level probed | KL | outliers | chosen |\n|---|---|---|---|---|\n"
        for c in r.choices.sorted(by: { $0.sensitivity > $1.sensitivity }).prefix(15) {
            s += String(format: "| %@ | %@ | %.5f | %.2f%% | %@ |\n", c.name, c.sensitivityLevel, c.sensitivity, c.outlierShare * 100, c.type)
        }
        return s
    }

    /// Bits per weight per layer (rows) and tensor kind (columns), embedding/output in a last row.
    public static func heatmap(_ r: CompressResult) -> String {
        let layers = (r.choices.compactMap(\.layer).max() ?? -1) + 1
        let cell = 64.0, rowH = 16.0, left = 70.0, top = 50.0
        let extra = r.choices.filter { $0.layer == nil }
        let width = left + cell * Double(kinds.count) + 150, height = top + rowH * Double(layers + extra.count) + 40
        let bits = r.choices.map(\.bitsPerWeight)
        let lo = bits.min() ?? 0, hi = max(bits.max() ?? 1, lo + 1e-9)
        func color(_ b: Double) -> String {
            // Light yellow (few bits) to dark blue (many bits).
            let f = (b - lo) / (hi - lo)
            let r = Int(255 - f * (255 - 31)), g = Int(245 - f * (245 - 80)), bl = Int(200 - f * (200 - 160))
            return String(format: "#%02x%02x%02x", r, g, bl)
        }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" font-family=\"sans-serif\" font-size=\"10\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(width / 2)\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">Bits per weight by layer and tensor</text>\n"
        for (k, kind) in kinds.enumerated() {
            s += "<text x=\"\(left + cell * (Double(k) + 0.5))\" y=\"\(top - 6)\" text-anchor=\"middle\">\(kind)</text>\n"
        }
        for c in r.choices {
            let (row, col, span): (Int, Int, Int)
            if let l = c.layer, let k = kinds.firstIndex(of: c.kind) { (row, col, span) = (l, k, 1) } else {
                (row, col, span) = (layers + (extra.firstIndex { $0.name == c.name } ?? 0), 0, kinds.count)
            }
            let x = left + cell * Double(col), y = top + rowH * Double(row)
            s += "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(cell * Double(span) - 1)\" height=\"\(rowH - 1)\" fill=\"\(color(c.bitsPerWeight))\"><title>\(c.name): \(c.type)</title></rect>"
            let label = span > 1 ? "\(c.kind): \(c.type) (\(String(format: "%.2f", c.bitsPerWeight)) bits)" : String(format: "%.1f", c.bitsPerWeight)
            s += "<text x=\"\(x + cell * Double(span) / 2)\" y=\"\(y + rowH - 4)\" text-anchor=\"middle\">\(label)</text>\n"
        }
        for l in 0 ..< layers { s += "<text x=\"\(left - 6)\" y=\"\(top + rowH * Double(l) + rowH - 4)\" text-anchor=\"end\">layer \(l)</text>\n" }
        // Legend.
        let lx = left + cell * Double(kinds.count) + 20
        for i in 0 ... 5 {
            let b = lo + (hi - lo) * Double(i) / 5
            s += "<rect x=\"\(lx)\" y=\"\(top + Double(i) * 18)\" width=\"14\" height=\"14\" fill=\"\(color(b))\"/>"
            s += "<text x=\"\(lx + 20)\" y=\"\(top + Double(i) * 18 + 11)\">\(String(format: "%.2f", b)) bits</text>\n"
        }
        s += "</svg>\n"
        return s
    }

    public static func pareto(_ r: CompressResult) -> String {
        // Points far above the search's range (e.g. uniform 2-bit) would flatten the chart: they are left to the table.
        let yMax = max((r.candidates.map(\.fitness) + [r.searchFitness, r.startFitness]).max() ?? 0, 1e-6) * 3
        func keep(_ p: [ComparisonPoint]) -> [ComparisonPoint] { p.filter { $0.fitness <= yMax } }
        var series: [SVGChart.Series] = []
        series.append(SVGChart.Series(name: "search candidates", points: keep(r.candidates).map { (Double($0.bytes) / 1e6, $0.fitness) },
                                      connected: false, radius: 2))
        let uniform = keep(r.comparisons.filter { $0.name.hasPrefix("uniform") || $0.name == "input" }).sorted { $0.bytes < $1.bytes }
        let others = keep(r.comparisons.filter { !($0.name.hasPrefix("uniform") || $0.name == "input") }).sorted { $0.bytes < $1.bytes }
        series.append(SVGChart.Series(name: "uniform levels", points: uniform.map { (Double($0.bytes) / 1e6, $0.fitness) }))
        series.append(SVGChart.Series(name: "result", points: [(Double(r.bytes) / 1e6, r.searchFitness)], connected: false, radius: 6))
        series.append(SVGChart.Series(name: "other files", points: others.map { (Double($0.bytes) / 1e6, $0.fitness) }, connected: false))
        var chart = SVGChart(title: "Size against KL on the search tokens", xLabel: "file size (MB)", yLabel: "mean KL (nats)", series: series)
        chart.pointLabels = [[], uniform.map(\.name), ["result"], others.map(\.name)]
        chart.yRange = 0 ... yMax
        return chart.render()
    }
}
