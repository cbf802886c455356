#include "traefik_dir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <unordered_set>

namespace supaplane::router {

namespace {
Error io_error(const std::string& what, const std::string& path) {
  return make_error(errc::unavailable, what + " " + path + ": " + std::strerror(errno));
}

Status fsync_path(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return io_error("open", path);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return io_error("fsync", path);
  return Status::Ok();
}

/// The whole file, with one fstat and as few reads as its size needs (the
/// start-up compares every tenant's file: 100,000 of them).
bool read_file(const std::string& path, std::string& out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return false;
  }
  out.resize(static_cast<std::size_t>(st.st_size));
  std::size_t off = 0;
  for (;;) {
    if (off == out.size()) out.resize(off + 4096);  // grew meanwhile
    const ssize_t n = ::read(fd, out.data() + off, out.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  ::close(fd);
  out.resize(off);
  return true;
}
FileStamp stamp_of(const struct stat& st) {
  FileStamp f;
  f.size = static_cast<std::uint64_t>(st.st_size);
  f.ino = static_cast<std::uint64_t>(st.st_ino);
  f.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  f.ctime_ns = static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec;
  return f;
}

/// Names the manifest can hold on one line: no whitespace, no control bytes.
bool manifest_name(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return false;
  return true;
}

constexpr std::string_view kManifestHeader = "supaplane-router-sync manifest 1\n";

/// Writes `content` to `tmp`, syncs it and renames it over `path`, then syncs
/// the directory: a reader sees the old file or the new one, never a part.
Status write_atomically(const std::string& dir, const std::string& tmp, const std::string& path,
                        const std::string& content, mode_t mode = 0644) {
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return io_error("open", tmp);
  std::size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      auto e = io_error("write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return e;
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    auto e = io_error("fsync", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return e;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto e = io_error("rename", tmp);
    ::unlink(tmp.c_str());
    return e;
  }
  return fsync_path(dir, O_RDONLY | O_DIRECTORY);
}
}  // namespace

std::uint64_t TraefikDir::content_hash(std::string_view content) {
  static const unsigned char kKey[crypto_shorthash_KEYBYTES] = {};
  unsigned char out[crypto_shorthash_BYTES];
  crypto_shorthash(out, reinterpret_cast<const unsigned char*>(content.data()), content.size(),
                   kKey);
  std::uint64_t h = 0;
  static_assert(sizeof out == sizeof h);
  std::memcpy(&h, out, sizeof h);
  return h;
}

void TraefikDir::record(const std::string& name, std::string_view content) {
  struct stat st {};
  manifest_dirty_ = true;
  if (::stat((dir_ + "/" + name).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    manifest_.erase(name);  // cannot vouch for it: read back next time
    return;
  }
  FileStamp f = stamp_of(st);
  f.hash = content_hash(content);
  manifest_[name] = f;
}

bool TraefikDir::load_manifest(std::unordered_map<std::string, FileStamp>& manifest) const {
  manifest.clear();
  std::string text;
  if (!read_file(dir_ + "/" + kManifest, text)) return true;  // none yet
  if (text.compare(0, kManifestHeader.size(), kManifestHeader) != 0) return false;
  std::unordered_map<std::string, FileStamp> out;
  out.reserve(text.size() / 64);
  std::size_t pos = kManifestHeader.size();
  while (pos < text.size()) {
    const auto eol = text.find('\n', pos);
    if (eol == std::string::npos) return false;  // cut short
    const std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    const auto sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0) return false;
    std::string name(line.substr(0, sp));
    if (!manifest_name(name)) return false;
    FileStamp f;
    const char* p = line.data() + sp + 1;
    const char* end = line.data() + line.size();
    auto num = [&](auto& v, int base) {
      if (p >= end) return false;
      auto r = std::from_chars(p, end, v, base);
      if (r.ec != std::errc()) return false;
      p = r.ptr;
      if (p < end && *p == ' ') ++p;
      return true;
    };
    if (!num(f.size, 10) || !num(f.ino, 10) || !num(f.mtime_ns, 10) || !num(f.ctime_ns, 10) ||
        !num(f.hash, 16) || p != end)
      return false;
    out[std::move(name)] = f;
  }
  manifest = std::move(out);
  return true;
}

Status TraefikDir::save_manifest() {
  if (!manifest_dirty_) return Status::Ok();
  std::string text(kManifestHeader);
  text.reserve(manifest_.size() * 80 + text.size());
  char buf[128];
  for (const auto& [name, f] : manifest_) {
    if (!manifest_name(name)) continue;
    const int n = std::snprintf(
        buf, sizeof buf, " %llu %llu %lld %lld %016llx\n", static_cast<unsigned long long>(f.size),
        static_cast<unsigned long long>(f.ino), static_cast<long long>(f.mtime_ns),
        static_cast<long long>(f.ctime_ns), static_cast<unsigned long long>(f.hash));
    text += name;
    text.append(buf, static_cast<std::size_t>(n));
  }
  // The manifest's name starts with '.': its temporary file is hidden too.
  if (auto st = write_atomically(dir_, dir_ + "/" + std::string(kManifest) + ".tmp",
                                 dir_ + "/" + std::string(kManifest), text);
      !st)
    return st;
  manifest_dirty_ = false;
  return Status::Ok();
}

Result<DirScan> TraefikDir::scan() const {
  DirScan scan;
  scan.manifest_bad = !load_manifest(scan.manifest);
  scan.have.reserve(scan.manifest.size() + 16);
  DIR* d = ::opendir(dir_.c_str());
  if (!d) return io_error("cannot list", dir_);
  const int dfd = ::dirfd(d);
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.' || e->d_name[0] == '\0') continue;
    if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN && e->d_type != DT_LNK) continue;
    struct stat st {};
    if (::fstatat(dfd, e->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode)) continue;
    scan.have.emplace(e->d_name, stamp_of(st));
  }
  ::closedir(d);
  return scan;
}

Result<ReconcileStats> TraefikDir::reconcile(const std::map<std::string, std::string>& want,
                                             const std::function<bool(const std::string&)>& ours) {
  auto sc = scan();
  if (!sc) return sc.error();
  std::vector<WantedFile> files;
  files.reserve(want.size());
  for (const auto& [name, content] : want)
    files.push_back(WantedFile{name, content_hash(content), content.size()});
  return reconcile(
      std::move(*sc), files, [&want](const std::string& name) { return want.at(name); }, ours);
}

Result<ReconcileStats> TraefikDir::reconcile(
    DirScan scan, const std::vector<WantedFile>& want,
    const std::function<std::string(const std::string&)>& content,
    const std::function<bool(const std::string&)>& ours) {
  ReconcileStats stats;
  stats.manifest_bad = scan.manifest_bad;
  manifest_ = std::move(scan.manifest);
  const auto& have = scan.have;
  std::vector<std::string> removes;
  {
    std::unordered_set<std::string_view> wanted;
    wanted.reserve(want.size());
    for (const auto& w : want) wanted.insert(w.name);
    for (const auto& [name, stamp] : have)
      if (!wanted.count(name) && ours(name)) removes.push_back(name);
  }
  std::vector<std::pair<std::string, std::string>> to_write;  // name, bytes
  std::unordered_map<std::string, FileStamp> kept;
  kept.reserve(want.size());
  std::string old;
  for (const auto& w : want) {
    auto it = have.find(w.name);
    if (it == have.end()) {
      to_write.emplace_back(w.name, content(w.name));
      continue;
    }
    if (auto m = manifest_.find(w.name); m != manifest_.end() && m->second.same_file(it->second)) {
      // Untouched since router-sync wrote it: its bytes hash to m->second.hash.
      ++stats.trusted;
      if (m->second.hash == w.hash && m->second.size == w.size)
        kept.emplace(w.name, m->second);
      else
        to_write.emplace_back(w.name, content(w.name));
      continue;
    }
    ++stats.read_back;
    std::string bytes = content(w.name);
    if (read_file(dir_ + "/" + w.name, old) && old == bytes) {
      FileStamp f = it->second;
      f.hash = w.hash;
      kept.emplace(w.name, f);
    } else {
      to_write.emplace_back(w.name, std::move(bytes));
    }
  }
  const bool changed_manifest = stats.manifest_bad || stats.read_back > 0 ||
                                kept.size() != manifest_.size() || !to_write.empty() ||
                                !removes.empty();
  manifest_ = std::move(kept);
  manifest_dirty_ = changed_manifest;
  // A first start writes every tenant's file: one sync for all of them, not
  // two per file (100,000 tenants: seconds instead of a quarter of an hour).
  std::vector<std::pair<std::string, const std::string*>> writes;
  writes.reserve(to_write.size());
  for (const auto& [name, bytes] : to_write) writes.emplace_back(name, &bytes);
  auto n = apply(writes, removes);
  if (!n) return n.error();
  stats.changed = *n;
  if (auto st = save_manifest(); !st) return st.error();
  return stats;
}

Status TraefikDir::write_private(const std::string& name, const std::string& content) {
  const std::string path = dir_ + "/" + name;
  return write_atomically(dir_, path + ".tmp", path, content, 0600);
}

TraefikDir::Mapped::~Mapped() {
  if (data_ && size_ > 0) ::munmap(const_cast<void*>(data_), size_);
}

Result<std::optional<TraefikDir::Mapped>> TraefikDir::map_private(const std::string& name) const {
  const std::string path = dir_ + "/" + name;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<Mapped>();
    return io_error("open", path);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    auto e = io_error("stat", path);
    ::close(fd);
    return e;
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return std::optional<Mapped>(Mapped(nullptr, 0));
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return io_error("mmap", path);
  return std::optional<Mapped>(Mapped(p, size));
}

Status TraefikDir::remove_private(const std::string& name) {
  const std::string path = dir_ + "/" + name;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return io_error("unlink", path);
  return Status::Ok();
}

Status TraefikDir::prepare() {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return make_error(errc::unavailable, "cannot create " + dir_ + ": " + ec.message());
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    const auto name = e.path().filename().string();
    if (name.size() > 5 && name[0] == '.' && name.substr(name.size() - 4) == ".tmp")
      std::filesystem::remove(e.path(), ec);
  }
  if (ec) return make_error(errc::unavailable, "cannot list " + dir_ + ": " + ec.message());
  return Status::Ok();
}

Result<bool> TraefikDir::put(const std::string& name, const std::string& content) {
  const std::string path = dir_ + "/" + name;
  std::string old;
  if (read_file(path, old) && old == content) return false;
  // Traefik's directory provider reads only *.yml / *.yaml / *.toml files.
  if (auto st = write_atomically(dir_, dir_ + "/." + name + ".tmp", path, content); !st)
    return st.error();
  record(name, content);
  return true;
}

Result<bool> TraefikDir::remove(const std::string& name) {
  const std::string path = dir_ + "/" + name;
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return false;
    return io_error("unlink", path);
  }
  if (manifest_.erase(name)) manifest_dirty_ = true;
  if (auto st = fsync_path(dir_, O_RDONLY | O_DIRECTORY); !st) return st.error();
  return true;
}

Result<int> TraefikDir::apply(const std::vector<std::pair<std::string, const std::string*>>& writes,
                              const std::vector<std::string>& removes) {
  std::vector<std::string> temps;
  auto discard = [&] {
    for (const auto& t : temps) ::unlink(t.c_str());
  };
  for (const auto& [name, content] : writes) {
    const std::string tmp = dir_ + "/." + name + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      auto e = io_error("open", tmp);
      discard();
      return e;
    }
    temps.push_back(tmp);
    std::size_t off = 0;
    while (off < content->size()) {
      ssize_t n = ::write(fd, content->data() + off, content->size() - off);
      if (n < 0) {
        if (errno == EINTR) continue;
        auto e = io_error("write", tmp);
        ::close(fd);
        discard();
        return e;
      }
      off += static_cast<std::size_t>(n);
    }
    ::close(fd);
  }
  if (!writes.empty()) {
    // Every file's bytes are on disk before any rename can be.
    int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
      auto e = io_error("open", dir_);
      discard();
      return e;
    }
    const int rc = ::syncfs(dfd);
    ::close(dfd);
    if (rc != 0) {
      auto e = io_error("syncfs", dir_);
      discard();
      return e;
    }
  }
  int changes = 0;
  for (std::size_t i = 0; i < writes.size(); ++i) {
    const std::string path = dir_ + "/" + writes[i].first;
    if (::rename(temps[i].c_str(), path.c_str()) != 0) {
      auto e = io_error("rename", temps[i]);
      for (std::size_t j = i; j < temps.size(); ++j) ::unlink(temps[j].c_str());
      return e;
    }
    record(writes[i].first, *writes[i].second);
    ++changes;
  }
  for (const auto& name : removes) {
    const std::string path = dir_ + "/" + name;
    if (manifest_.erase(name)) manifest_dirty_ = true;
    if (::unlink(path.c_str()) != 0) {
      if (errno == ENOENT) continue;
      return io_error("unlink", path);
    }
    ++changes;
  }
  if (changes > 0)
    if (auto st = fsync_path(dir_, O_RDONLY | O_DIRECTORY); !st) return st.error();
  return changes;
}

Result<std::map<std::string, std::string>> TraefikDir::read_all() const {
  std::map<std::string, std::string> out;
  DIR* d = ::opendir(dir_.c_str());
  if (!d) return io_error("cannot list", dir_);
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.empty() || name[0] == '.') continue;
    if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN && e->d_type != DT_LNK) continue;
    const std::string path = dir_ + "/" + name;
    if (e->d_type != DT_REG) {  // a link, or a file system that does not say: ask
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    }
    std::string content;
    if (!read_file(path, content)) continue;  // removed meanwhile
    out.emplace(name, std::move(content));
  }
  ::closedir(d);
  return out;
}

}  // namespace supaplane::router
