#pragma once
#include <string>

#include "supaplane/core/result.hpp"

namespace supaplane::cli {

/// $HOME/.config/supaplane/token (the passwd entry's home when HOME is unset).
std::string default_token_path();

/// The first line of the token file; not_found when it is missing or empty.
Result<std::string> read_token_file(const std::string& path);

/// Replaces the token file atomically (temp file + rename) with mode 0600,
/// creating missing parent directories with mode 0700.
Status write_token_file(const std::string& path, const std::string& token);

}  // namespace supaplane::cli
