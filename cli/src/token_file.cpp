#include "token_file.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace supaplane::cli {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

Status make_parent_dirs(const std::filesystem::path& file) {
  std::filesystem::path prefix;
  for (const auto& part : file.parent_path()) {
    prefix /= part;
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST)
      return make_error(errc::internal,
                        "cannot create directory " + prefix.string() + ": " + errno_text(errno));
  }
  return Status::Ok();
}

bool write_all(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

std::string default_token_path() {
  std::string home;
  if (const char* h = std::getenv("HOME"); h && *h) {
    home = h;
  } else if (const passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir) {
    home = pw->pw_dir;
  } else {
    home = ".";
  }
  return home + "/.config/supaplane/token";
}

Result<std::string> read_token_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return make_error(errc::not_found, "not logged in (no token file " + path + ")");
  std::ifstream in(path);
  if (!in) return make_error(errc::internal, "cannot read token file " + path);
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.empty())
    return make_error(errc::not_found, "not logged in (token file " + path + " is empty)");
  return token;
}

Status write_token_file(const std::string& path, const std::string& token) {
  const std::filesystem::path file(path);
  if (auto st = make_parent_dirs(file); !st) return st;
  std::string tmpl = path + ".XXXXXX";
  const int fd = ::mkstemp(tmpl.data());  // created with mode 0600
  if (fd < 0)
    return make_error(errc::internal, "cannot write token file " + path + ": " + errno_text(errno));
  const bool ok = ::fchmod(fd, 0600) == 0 && write_all(fd, token + "\n") && ::fsync(fd) == 0;
  const int write_errno = errno;
  ::close(fd);
  if (!ok || ::rename(tmpl.c_str(), path.c_str()) != 0) {
    const int err = ok ? errno : write_errno;
    ::unlink(tmpl.c_str());
    return make_error(errc::internal, "cannot write token file " + path + ": " + errno_text(err));
  }
  return Status::Ok();
}

}  // namespace supaplane::cli
