#pragma once
/// Starts a child process (bulwarkd) with its output in a file, for integration tests that need
/// the real binary: signals, exit codes, what it logs.

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace bulwark::test {

class child_process {
public:
  child_process(const std::vector<std::string>& argv, const std::string& output_file)
      : output_(output_file) {
    pid_ = ::fork();
    if (pid_ < 0)
      throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      int fd = ::open(output_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<char*> args;
      for (auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }

  ~child_process() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      wait(std::chrono::seconds(5));
    }
  }

  pid_t pid() const { return pid_; }

  void signal(int sig) { ::kill(pid_, sig); }

  /// Waits for the exit; the exit code, or -signal, or nothing on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (!status_) {
      int st = 0;
      auto r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_)
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
      else if (std::chrono::steady_clock::now() >= until)
        break;
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return status_;
  }

  std::string output() const {
    std::ifstream in{output_};
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  /// Waits until the output contains `needle`; the output, or nothing on timeout or exit.
  std::optional<std::string> wait_output(const std::string& needle,
                                         std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    do {
      auto out = output();
      if (out.find(needle) != std::string::npos)
        return out;
      if (wait(std::chrono::milliseconds(0)))
        return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    } while (std::chrono::steady_clock::now() < until);
    return std::nullopt;
  }

private:
  pid_t pid_ = -1;
  std::string output_;
  std::optional<int> status_;
};

/// Runs a command to completion; its exit code and combined output.
inline std::pair<int, std::string> run_command(const std::string& cmd) {
  std::string out;
  auto* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p)
    return {-1, ""};
  char buf[4096];
  size_t n;
  while ((n = ::fread(buf, 1, sizeof(buf), p)) > 0)
    out.append(buf, n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

} // namespace bulwark::test
