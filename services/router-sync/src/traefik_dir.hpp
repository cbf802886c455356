#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "supaplane/core/result.hpp"

namespace supaplane::router {

/// What the directory held for one file when router-sync last wrote or
/// checked it: enough of its `stat` to see that it changed since (a rename
/// gives a new inode; a write changes size, mtime and ctime, and ctime
/// cannot be set back from user space), and a hash of its bytes.
struct FileStamp {
  std::uint64_t size{0};
  std::uint64_t ino{0};
  std::int64_t mtime_ns{0};
  std::int64_t ctime_ns{0};
  std::uint64_t hash{0};  ///< content_hash of the bytes
  bool same_file(const FileStamp& o) const {
    return size == o.size && ino == o.ino && mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns;
  }
};

/// What a reconcile did, for its log line and metrics.
struct ReconcileStats {
  int changed{0};            ///< files written or removed
  int read_back{0};          ///< files read and compared (not vouched for by the manifest)
  int trusted{0};            ///< files the manifest vouched for (not read)
  bool manifest_bad{false};  ///< the manifest was there but unreadable: ignored
};

/// What reconcile compares against: the manifest as loaded and a `stat` of
/// every regular, non-hidden file (no file is read).
struct DirScan {
  std::unordered_map<std::string, FileStamp> manifest{};
  std::unordered_map<std::string, FileStamp> have{};
  bool manifest_bad{false};  ///< the manifest was there but unreadable: ignored
};

/// A file reconcile must leave in the directory, known by the hash
/// (TraefikDir::content_hash) and size of its bytes; the bytes themselves are
/// asked for only when the file must be read back and compared, or written.
struct WantedFile {
  std::string name;
  std::uint64_t hash{0};
  std::uint64_t size{0};
};

/// The watched directory of Traefik's file provider. Every write is atomic:
/// a hidden temp name Traefik ignores, fsync, rename, fsync of the directory.
/// Files are written only when their bytes change. One writer thread.
///
/// A manifest (`.supaplane-manifest`, hidden, written atomically) records
/// each file's FileStamp as written, so a start re-reads only the files that
/// changed behind router-sync's back (or were written after the manifest was
/// last saved) instead of every file.
class TraefikDir {
 public:
  static constexpr const char* kManifest = ".supaplane-manifest";
  explicit TraefikDir(std::string dir) : dir_(std::move(dir)) {}
  const std::string& path() const { return dir_; }
  /// Creates the directory and removes leftover temp files.
  Status prepare();
  /// Writes `name` with `content` unless it already holds exactly that.
  /// Returns true when it wrote.
  Result<bool> put(const std::string& name, const std::string& content);
  /// Removes `name` (absent is fine). Returns true when it removed.
  Result<bool> remove(const std::string& name);
  /// Writes many files at once, each atomically as `put` does, but with two
  /// syncs in all instead of two per file: every temp file is written, the
  /// file system synced once (syncfs), then every file renamed into place,
  /// then the directory synced once; `removes` are unlinked before that last
  /// sync. Returns the number of files written or removed.
  Result<int> apply(const std::vector<std::pair<std::string, const std::string*>>& writes,
                    const std::vector<std::string>& removes);
  /// Every regular, non-hidden file: name → content.
  Result<std::map<std::string, std::string>> read_all() const;
  /// Loads the manifest and stats every file. Reads only: it may run on
  /// another thread while the wanted files are rendered, as long as nothing
  /// writes the directory before the reconcile that uses it.
  Result<DirScan> scan() const;
  /// Makes the directory hold exactly `want` among the files `ours` accepts,
  /// then saves the manifest. A file is read back only when the manifest
  /// cannot vouch for it (no entry, or its stat differs from the entry); a
  /// file it vouches for is kept when the manifest's hash and size are the
  /// wanted ones. `content(name)` gives the bytes of a wanted file when they
  /// are needed (a file to compare or write).
  Result<ReconcileStats> reconcile(DirScan scan, const std::vector<WantedFile>& want,
                                   const std::function<std::string(const std::string&)>& content,
                                   const std::function<bool(const std::string&)>& ours);
  /// The same, from the whole wanted bytes (scans first).
  Result<ReconcileStats> reconcile(const std::map<std::string, std::string>& want,
                                   const std::function<bool(const std::string&)>& ours);
  /// Writes the manifest if something was written or removed since it was
  /// last saved (atomically: temp file, fsync, rename).
  Status save_manifest();

  /// The manifest's entry for `name` (null when it has none).
  const FileStamp* stamp(const std::string& name) const {
    auto it = manifest_.find(name);
    return it == manifest_.end() ? nullptr : &it->second;
  }
  /// A hidden file of ours next to the tenants' files (name starts with
  /// '.': Traefik ignores it), written atomically, readable by its owner only.
  Status write_private(const std::string& name, const std::string& content);
  /// A read-only mapping of a private file (no copy of its bytes).
  class Mapped {
   public:
    Mapped() = default;
    Mapped(const void* data, std::size_t size) : data_(data), size_(size) {}
    Mapped(Mapped&& o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr; }
    Mapped& operator=(Mapped&&) = delete;
    ~Mapped();
    std::string_view view() const {
      return data_ ? std::string_view(static_cast<const char*>(data_), size_) : std::string_view();
    }

   private:
    const void* data_{nullptr};
    std::size_t size_{0};
  };
  /// nullopt when there is none.
  Result<std::optional<Mapped>> map_private(const std::string& name) const;
  /// Unlinks it without a directory sync: the render state it serves is
  /// checked against the projection when read, so one that comes back after
  /// a crash is used only if it still matches.
  Status remove_private(const std::string& name);

  /// The hash the manifest records (SipHash-2-4 with a fixed key: a
  /// checksum, not a secret).
  static std::uint64_t content_hash(std::string_view content);

 private:
  /// Reads the manifest into `out`; false when it is there but malformed (then empty).
  bool load_manifest(std::unordered_map<std::string, FileStamp>& out) const;
  void record(const std::string& name, std::string_view content);

  std::string dir_;
  std::unordered_map<std::string, FileStamp> manifest_;
  bool manifest_dirty_{false};
};

}  // namespace supaplane::router
