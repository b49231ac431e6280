import Foundation
import SquishEval
import SquishQuantize

/// The starting allocation: the best one under the budget by a separable estimate of each tensor's cost,
/// cost(t, l) = sensitivity_t · error(t, l) / error(t, l_probe), where sensitivity_t is the measured KL of the model
/// with only tensor t one level below its top (l_probe) and error(t, l) the database's relative output error of
/// level l. Greedy on the lower convex hull: starting from every tensor's smallest level, repeatedly take the
/// upgrade with the largest cost reduction per byte that still fits (a Lagrangian relaxation of the knapsack).
public enum ImportanceAllocation {
    /// `measured[t][l]`, where given, replaces the estimate (the KL measured with only tensor t at level l); an
    /// unmeasured lossy level is extrapolated from the nearest measured one by the ratio of their weight errors.
    public static func costs(_ tensors: [LevelTensor], sensitivity: [Double], measured: [[Double?]]? = nil) -> [[Double]] {
        tensors.enumerated().map { t, entry in
            let top = entry.levels.count - 1
            let probe = max(0, top - 1)
            return entry.levels.enumerated().map { l, level in
                if let m = measured?[t][l] { return max(0, m) }
                if level.isSource { return 0 }
                if l == top { return 0 }  // the best available level: nothing better to compare with
                // The nearest measured lossy level (ties: the lower one), else the probe with the sensitivity.
                var anchor = (level: probe, cost: sensitivity[t])
                if let m = measured?[t] {
                    let candidates = m.indices.filter { m[$0] != nil && !entry.levels[$0].isSource && entry.levels[$0].error > 0 }
                    if let near = candidates.min(by: { (abs($0 - l), $0) < (abs($1 - l), $1) }) { anchor = (near, m[near]!) }
                }
                let anchorError = entry.levels[anchor.level].error
                guard anchorError > 0 else { return max(0, anchor.cost) }
                return max(0, anchor.cost) * level.error / anchorError
            }
        }
    }

    /// `fixed`: tensors whose level is given (tensor index → level), the rest chosen. `droppedLayers`: blocks removed
    /// whole; their tensors stay at their smallest level and take no bytes.
    public static func allocate(_ tensors: [LevelTensor], costs: [[Double]], budget: Int, fixed: [Int: Int] = [:],
                                droppedLayers: [Int] = []) throws -> Allocation {
        var a = Allocation(levels: tensors.indices.map { fixed[$0] ?? 0 }, droppedLayers: droppedLayers)
        let free = tensors.indices.filter { fixed[$0] == nil && !a.drops(tensors[$0]) }
        let used = a.bytes(tensors)
        guard used <= budget else {
            throw CompressError.budget("even the smallest level of every tensor takes \(used) bytes, more than the \(budget) available")
        }
        raise(&a, free: free, tensors, costs: costs, budget: budget)
        return a
    }

    /// `start` (e.g. every tensor at one block type) brought within the budget with as few bytes moved as the sizes
    /// allow: while it is over, the one-level downgrade of a matrix that saves the most bytes (the estimated cost
    /// decides between equal savings), the large matrices (`LevelDatabase.isLarge`) only when nothing else is left;
    /// then the upgrades that fit, as in `allocate`. (Picking downgrades by estimated cost per byte moves many small
    /// tensors to the lowest levels, or the embedding, whose estimates are least reliable there, and ends where
    /// `allocate` does.) Nil when even the smallest levels do not fit.
    public static func fit(_ start: Allocation, _ tensors: [LevelTensor], costs: [[Double]], budget: Int) -> Allocation? {
        var a = start
        let free = tensors.indices.filter { !a.drops(tensors[$0]) }
        let total = tensors.reduce(0) { $0 + $1.parameters }
        var used = a.bytes(tensors)
        while used > budget {
            var best: (t: Int, rank: (Int, Int, Double))?
            for t in free where a.levels[t] > 0 {
                let l = a.levels[t], lv = tensors[t].levels
                let saved = lv[l].bytes - lv[l - 1].bytes
                guard saved > 0 else { continue }
                // Smaller ranks first: small matrices, the larger saving, the smaller cost.
                let rank = (LevelDatabase.isLarge(parameters: tensors[t].parameters, of: total) ? 1 : 0, -saved, costs[t][l - 1] - costs[t][l])
                if best == nil || rank < best!.rank { best = (t, rank) }
            }
            guard let b = best else { return nil }
            used -= tensors[b.t].levels[a.levels[b.t]].bytes - tensors[b.t].levels[a.levels[b.t] - 1].bytes
            a.levels[b.t] -= 1
        }
        raise(&a, free: free, tensors, costs: costs, budget: budget)
        return a
    }

    /// Greedy upgrades of the `free` tensors within the budget: the largest estimated cost reduction per byte first,
    /// then whatever bytes remain on the cheapest upgrades even if their estimated gain is zero.
    static func raise(_ a: inout Allocation, free: [Int], _ tensors: [LevelTensor], costs: [[Double]], budget: Int) {
        var used = a.bytes(tensors)
        while true {
            var best: (t: Int, l: Int, ratio: Double)?
            for t in free {
                let cur = a.levels[t]
                let lv = tensors[t].levels
                for l in (cur + 1) ..< lv.count {
                    let extra = lv[l].bytes - lv[cur].bytes
                    guard extra > 0, used + extra <= budget else { continue }
                    let ratio = (costs[t][cur] - costs[t][l]) / Double(extra)
                    if best == nil || ratio > best!.ratio { best = (t, l, ratio) }
                }
            }
            guard let b = best, b.ratio > 0 else { break }
            used += tensors[b.t].levels[b.l].bytes - tensors[b.t].levels[a.levels[b.t]].bytes
            a.levels[b.t] = b.l
        }
        var changed = true
        while changed {
            changed = false
            for t in free where a.levels[t] + 1 < tensors[t].levels.count {
                let extra = tensors[t].levels[a.levels[t] + 1].bytes - tensors[t].levels[a.levels[t]].bytes
                if used + extra <= budget { used += extra; a.levels[t] += 1; changed = true }
            }
        }
    }
}

/// EvoPress-style search (Sieberling, Kuznedelev, Kurtic, Alistarh 2024, "EvoPress: Towards Optimal Dynamic Model
/// Compression via Evolutionary Search"): a (1 + λ) evolutionary algorithm over per-tensor levels.
/// - Mutation ("level switch"): raise one tensor by a level, lower randomly chosen other tensors until the total fits
///   the budget again, then spend any slack on random upgrades that fit, so every candidate stays within the budget.
/// - With `maxDroppedLayers` > 0 (EvoPress's depth pruning joined to the level search), a share `depthRate` of the
///   mutations drops a block, restores one, or swaps a dropped block for a kept one instead, then restores the budget
///   the same way.
/// - Multi-stage selection: all λ offspring are scored on a few tokens, the best few on more, and the best of those
///   replaces the parent only if it beats it on the last stage's tokens (elitism; the parent's scores are cached).
/// Deterministic under the seed (the scores themselves are deterministic).
public struct EvolutionarySearch {
    public struct Stage: Sendable {
        /// Calibration sequences (or, when `tokens` is set, positions of the first sequence) a candidate is scored on.
        public var sequences: Int
        public var tokens: Int?
        /// Candidates kept for the next stage.
        public var survivors: Int
        public init(sequences: Int = 1, tokens: Int? = nil, survivors: Int) {
            self.sequences = sequences
            self.tokens = tokens
            self.survivors = survivors
        }
    }

    public struct Options: Sendable {
        public var seed: UInt64 = 1
        public var offspring = 12
        public var stages: [Stage] = [Stage(sequences: 1, tokens: 128, survivors: 3), Stage(sequences: 4, survivors: 1)]
        /// Most level switches in one mutation.
        public var maxSwitches = 3
        public var maxGenerations = 10_000
        /// Most blocks a candidate may drop (0: none, the level search alone).
        public var maxDroppedLayers = 0
        /// Share of mutations that change the dropped blocks (when `maxDroppedLayers` > 0).
        public var depthRate = 0.25
        public init() {}
    }

    public struct Generation: Codable, Sendable {
        public var generation: Int
        /// The parent's fitness on the last stage's tokens after this generation.
        public var fitness: Double
        public var improved: Bool
        public var seconds: Double
    }

    /// Every candidate scored on the last stage (for the Pareto chart): bytes of its matrices and its fitness.
    public struct Candidate: Sendable {
        public var bytes: Int
        public var fitness: Double
    }

    public let tensors: [LevelTensor]
    public let budget: Int
    public let options: Options
    /// Blocks of the model (one more than the largest block index of a tensor).
    let layerCount: Int

    public init(tensors: [LevelTensor], budget: Int, options: Options) {
        self.tensors = tensors
        self.budget = budget
        self.options = options
        layerCount = (tensors.compactMap(\.layer).max() ?? -1) + 1
    }

    public func bytes(_ a: Allocation) -> Int { a.bytes(tensors) }

    /// One mutation of `parent` that stays within the budget (nil if no level can move).
    public func mutate(_ parent: Allocation, rng: inout SplitMix) -> Allocation? {
        if options.maxDroppedLayers > 0, layerCount > 1, Double(rng.next() % 1_000_000) < options.depthRate * 1_000_000 {
            return mutateDepth(parent, rng: &rng)
        }
        var child = parent
        var used = bytes(child)
        let switches = 1 + Int(rng.next() % UInt64(max(1, options.maxSwitches)))
        var touched = Set<Int>()
        let live = tensors.indices.filter { !child.drops(tensors[$0]) }
        for _ in 0 ..< switches {
            let raisable = live.filter { child.levels[$0] + 1 < tensors[$0].levels.count && !touched.contains($0) }
            guard let up = raisable.randomElement(using: &rng) else { break }
            used += tensors[up].levels[child.levels[up] + 1].bytes - tensors[up].levels[child.levels[up]].bytes
            child.levels[up] += 1
            touched.insert(up)
            guard lower(&child, used: &used, touched: &touched, rng: &rng) else { return nil }
        }
        spendSlack(&child, used: &used, sparing: touched, rng: &rng)
        return child == parent ? nil : child
    }

    /// Lowers random tensors of kept blocks not yet `touched` (each at most once; added to `touched`) until `used`
    /// fits the budget; false when it cannot.
    func lower(_ child: inout Allocation, used: inout Int, touched: inout Set<Int>, rng: inout SplitMix) -> Bool {
        var guardCount = 0
        while used > budget && guardCount < 10_000 {
            guardCount += 1
            let lowerable = tensors.indices.filter { child.levels[$0] > 0 && !touched.contains($0) && !child.drops(tensors[$0]) }
            guard let down = lowerable.randomElement(using: &rng) else { break }
            used -= tensors[down].levels[child.levels[down]].bytes - tensors[down].levels[child.levels[down] - 1].bytes
            child.levels[down] -= 1
            touched.insert(down)
        }
        return used <= budget
    }

    /// Spends the slack: random upgrades that fit, of tensors of kept blocks not in `sparing`.
    func spendSlack(_ child: inout Allocation, used: inout Int, sparing: Set<Int>, rng: inout SplitMix) {
        var candidates = tensors.indices.filter { !sparing.contains($0) && !child.drops(tensors[$0]) }
        candidates.shuffle(using: &rng)
        for t in candidates where child.levels[t] + 1 < tensors[t].levels.count {
            let extra = tensors[t].levels[child.levels[t] + 1].bytes - tensors[t].levels[child.levels[t]].bytes
            if used + extra <= budget { used += extra; child.levels[t] += 1 }
        }
    }

    /// Drops a block (its bytes spent on random upgrades), restores one (its tensors at the levels they had; others
    /// lowered until the budget holds) or swaps a dropped block for a kept one. At least one block is always kept.
    func mutateDepth(_ parent: Allocation, rng: inout SplitMix) -> Allocation? {
        var child = parent
        let kept = parent.keptLayers(of: layerCount), dropped = parent.droppedLayers
        let canDrop = dropped.count < min(options.maxDroppedLayers, layerCount - 1)
        enum Move { case drop, restore, swap }
        var moves: [Move] = []
        if canDrop { moves.append(.drop) }
        if !dropped.isEmpty { moves += [.restore, .swap] }
        guard let move = moves.randomElement(using: &rng) else { return nil }
        if move != .drop, let back = dropped.randomElement(using: &rng) { child.droppedLayers.removeAll { $0 == back } }
        if move != .restore, let out = kept.randomElement(using: &rng) { child.droppedLayers = (child.droppedLayers + [out]).sorted() }
        var used = bytes(child)
        var touched = Set<Int>()
        guard lower(&child, used: &used, touched: &touched, rng: &rng) else { return nil }
        spendSlack(&child, used: &used, sparing: touched, rng: &rng)
        return child == parent ? nil : child
    }

    /// Runs generations until `deadline` (or `maxGenerations`). `score(allocation, stage)` returns the fitness
    /// (lower is better). `report` is called after every generation.
    public func run(start: Allocation, deadline: Date, score: (Allocation, Stage) throws -> Double,
                    report: (Generation) -> Void = { _ in }) throws -> (best: Allocation, fitness: Double, history: [Generation],
                                                                         candidates: [Candidate]) {
        precondition(!options.stages.isEmpty)
        var rng = SplitMix(seed: options.seed)
        var parent = start
        let last = options.stages.count - 1
        var parentScores: [Int: Double] = [:]  // stage → parent's fitness
        func parentScore(_ stage: Int) throws -> Double {
            if let s = parentScores[stage] { return s }
            let s = try score(parent, options.stages[stage])
            parentScores[stage] = s
            return s
        }
        var history: [Generation] = []
        var candidates: [Candidate] = [Candidate(bytes: bytes(parent), fitness: try parentScore(last))]
        var generation = 0
        while generation < options.maxGenerations && Date() < deadline {
            let t0 = Date()
            generation += 1
            var pool: [Allocation] = []
            var seen = Set<Allocation>([parent])
            var attempts = 0
            while pool.count < options.offspring && attempts < options.offspring * 20 {
                attempts += 1
                if let c = mutate(parent, rng: &rng), seen.insert(c).inserted { pool.append(c) }
            }
            guard !pool.isEmpty else { break }
            var scored: [(Allocation, Double)] = []
            var finished = false
            for (si, stage) in options.stages.enumerated() {
                scored = try pool.map { ($0, try score($0, stage)) }
                scored.sort { $0.1 < $1.1 }
                if si == last {
                    for (a, f) in scored { candidates.append(Candidate(bytes: bytes(a), fitness: f)) }
                    finished = true
                    break
                }
                pool = scored.prefix(max(1, stage.survivors)).map(\.0)
                if Date() >= deadline { break }  // out of time between stages: this generation does not count
            }
            var improved = false
            if finished, let (best, f) = scored.first, f < (try parentScore(last)) {
                parent = best
                parentScores = [last: f]
                improved = true
            }
            let g = Generation(generation: generation, fitness: try parentScore(last), improved: improved,
                               seconds: Date().timeIntervalSince(t0))
            history.append(g)
            report(g)
        }
        return (parent, try parentScore(last), history, candidates)
    }
}
