import Foundation

/// Where Squish keeps downloaded models and corpora: `$SQUISH_CACHE`, else
/// `$XDG_CACHE_HOME/squish`, else `~/.cache/squish`. Always outside the source tree.
public func squishCacheDirectory() -> String {
    let env = ProcessInfo.processInfo.environment
    if let dir = env["SQUISH_CACHE"], !dir.isEmpty { return dir }
    if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty { return xdg + "/squish" }
    return NSHomeDirectory() + "/.cache/squish"
}
