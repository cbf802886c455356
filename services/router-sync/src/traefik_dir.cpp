#include "traefik_dir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

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
}  // namespace

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
  const std::string tmp = dir_ + "/." + name + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
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
  if (auto st = fsync_path(dir_, O_RDONLY | O_DIRECTORY); !st) return st.error();
  return true;
}

Result<bool> TraefikDir::remove(const std::string& name) {
  const std::string path = dir_ + "/" + name;
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return false;
    return io_error("unlink", path);
  }
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
    ++changes;
  }
  for (const auto& name : removes) {
    const std::string path = dir_ + "/" + name;
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
