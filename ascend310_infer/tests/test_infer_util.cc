/*
 * Unit tests of infer_util (no SDK, no test framework: a small table of named cases).
 *   test_infer_util           run every case
 *   test_infer_util NAME...   run the named cases (CTest runs one case per test)
 *   test_infer_util --list    print the case names
 */
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "infer_util.h"

namespace fs = std::filesystem;
using vitjob::ArgError;
using vitjob::InferError;
using vitjob::IoError;

namespace {

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

#define CHECK(cond)                                                                              \
  do {                                                                                           \
    if (!(cond)) throw Failure(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " #cond); \
  } while (0)

#define CHECK_EQ(a, b)                                                                     \
  do {                                                                                     \
    const auto va_ = (a);                                                                  \
    const auto vb_ = (b);                                                                  \
    if (!(va_ == vb_)) {                                                                   \
      std::ostringstream msg_;                                                             \
      msg_ << __FILE__ << ":" << __LINE__ << ": " #a " == " #b " (" << va_ << " vs " << vb_ << ")"; \
      throw Failure(msg_.str());                                                           \
    }                                                                                      \
  } while (0)

// Runs `fn`, requires it to throw E whose message contains `needle`.
template <typename E>
void ExpectThrow(const std::function<void()> &fn, const std::string &needle, int line) {
  try {
    fn();
  } catch (const E &exc) {
    if (std::string(exc.what()).find(needle) == std::string::npos) {
      throw Failure("line " + std::to_string(line) + ": message '" + exc.what() + "' lacks '" + needle + "'");
    }
    return;
  }
  throw Failure("line " + std::to_string(line) + ": expected an exception mentioning '" + needle + "'");
}
#define CHECK_THROWS(E, expr, needle) ExpectThrow<E>([&] { (void)(expr); }, needle, __LINE__)

// A fresh temporary directory removed at scope exit.
class TempDir {
 public:
  explicit TempDir(const std::string &tag)
      : path_(fs::temp_directory_path() / ("vitjob_infer_util_" + tag + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
  std::string operator/(const std::string &name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

std::vector<std::uint8_t> FloatBytes(const std::vector<float> &values) {
  std::vector<std::uint8_t> out(values.size() * sizeof(float));
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

std::vector<float> BytesToFloats(const std::vector<std::uint8_t> &bytes) {
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

void WriteFloats(const std::string &path, const std::vector<float> &values) {
  const auto bytes = FloatBytes(values);
  vitjob::WriteFile(path, bytes.data(), bytes.size());
}

// ------------------------------------------------------------------------------------- cases

void ParseBothForms() {
  const auto opts = vitjob::ParseArgs(std::vector<std::string>{
      "--model_path=/m/vit.mindir", "--dataset_path", "/d/img", "--device_id=3", "--result_path", "r",
      "--time_file=t/x.txt", "--dataset=Cifar10"});
  CHECK_EQ(opts.model_path, std::string("/m/vit.mindir"));
  CHECK_EQ(opts.dataset_path, std::string("/d/img"));
  CHECK_EQ(opts.device_id, 3);
  CHECK_EQ(opts.result_path, std::string("r"));
  CHECK_EQ(opts.time_file, std::string("t/x.txt"));
  CHECK_EQ(opts.dataset, std::string("cifar10"));
  CHECK(!opts.help);
}

void ParseDefaults() {
  const char *argv[] = {"main", "--model_path=m.mindir", "--dataset_path=d"};
  const auto opts = vitjob::ParseArgs(3, argv);
  CHECK_EQ(opts.device_id, 0);
  CHECK_EQ(opts.result_path, std::string("./result_Files"));
  CHECK_EQ(opts.time_file, std::string("./time_Result/test_perform_static.txt"));
}

void ParseHelp() {
  const auto opts = vitjob::ParseArgs(std::vector<std::string>{"--help"});
  CHECK(opts.help);
  CHECK(vitjob::Usage("main").find("--model_path") != std::string::npos);
}

void ParseErrors() {
  using V = std::vector<std::string>;
  CHECK_THROWS(ArgError, vitjob::ParseArgs(V{"--dataset_path=d"}), "--model_path is required");
  CHECK_THROWS(ArgError, vitjob::ParseArgs(V{"--model_path=m"}), "--dataset_path is required");
  CHECK_THROWS(ArgError, vitjob::ParseArgs(V{"--model_path=m", "--dataset_path=d", "--bogus=1"}),
               "unknown flag --bogus");
  CHECK_THROWS(ArgError, vitjob::ParseArgs(V{"--model_path"}), "--model_path needs a value");
  CHECK_THROWS(ArgError, vitjob::ParseArgs(V{"--model_path", "--dataset_path=d"}), "--model_path needs a value");
  CHECK_THROWS(ArgError, vitjob::ParseArgs(V{"--model_path=m", "--dataset_path=d", "--device_id=-1"}),
               "non-negative integer");
  CHECK_THROWS(ArgError, vitjob::ParseArgs(V{"--model_path=m", "--dataset_path=d", "--device_id=x"}),
               "non-negative integer");
  CHECK_THROWS(ArgError, vitjob::ParseArgs(V{"--model_path=m", "--dataset_path=d", "--device_id=99999999999"}),
               "out of range");
  CHECK_THROWS(ArgError, vitjob::ParseArgs(V{"--model_path=m", "--dataset_path=d", "--dataset=imagenet"}),
               "not supported");
  CHECK_THROWS(ArgError, vitjob::ParseArgs(V{"m.mindir"}), "unexpected argument 'm.mindir'");
  CHECK_THROWS(ArgError, vitjob::ParseArgs(V{"--model_path=", "--dataset_path=d"}), "must not be empty");
}

void ListSortedBinOnly() {
  TempDir dir("list");
  for (const char *name : {"b_10.bin", "b_2.bin", "a.bin", "notes.txt", "c.bin.tmp"}) {
    WriteFloats(dir / name, {1.0f});
  }
  fs::create_directories(dir / "sub.bin");
  WriteFloats(dir / "sub.bin/inner.bin", {1.0f});
  const auto files = vitjob::ListBinFiles(dir.str());
  CHECK_EQ(files.size(), static_cast<std::size_t>(3));
  CHECK_EQ(fs::path(files[0]).filename().string(), std::string("a.bin"));
  CHECK_EQ(fs::path(files[1]).filename().string(), std::string("b_10.bin"));
  CHECK_EQ(fs::path(files[2]).filename().string(), std::string("b_2.bin"));
}

void ListErrors() {
  TempDir dir("listerr");
  CHECK_THROWS(IoError, vitjob::ListBinFiles(dir / "missing"), "does not exist");
  WriteFloats(dir / "file.bin", {1.0f});
  CHECK_THROWS(IoError, vitjob::ListBinFiles(dir / "file.bin"), "is not a directory");
  fs::create_directories(dir / "empty");
  CHECK_THROWS(IoError, vitjob::ListBinFiles(dir / "empty"), "no .bin files in");
}

void ReadWriteRoundTrip() {
  TempDir dir("io");
  const std::vector<float> values = {0.5f, -1.25f, 3.0e-7f, 12345.678f};
  WriteFloats(dir / "deep/er/x.bin", values);  // parents are created
  const auto back = BytesToFloats(vitjob::ReadFile(dir / "deep/er/x.bin"));
  CHECK(back == values);
}

void ReadErrors() {
  TempDir dir("readerr");
  CHECK_THROWS(IoError, vitjob::ReadFile(dir / "nope.bin"), "nope.bin");
  { std::ofstream empty(dir / "empty.bin"); }
  CHECK_THROWS(IoError, vitjob::ReadFile(dir / "empty.bin"), "empty.bin is empty");
  CHECK_THROWS(IoError, vitjob::WriteFile(dir / "empty.bin/child", "x", 1), "empty.bin");
}

void ResultNaming() {
  CHECK_EQ(vitjob::ResultPath("out", "/p/img_data/vit_base_cifar10_1_7.bin", 0),
           std::string("out/vit_base_cifar10_1_7_0.bin"));
  CHECK_EQ(vitjob::ResultPath("./result_Files", "x.bin", 2), std::string("./result_Files/x_2.bin"));
  CHECK_EQ(vitjob::ResultPath("r", "noext", 1), std::string("r/noext_1.bin"));
}

void TimingStatsAndLine() {
  vitjob::TimingStats stats;
  CHECK_EQ(stats.MeanMs(), 0.0);
  CHECK_EQ(vitjob::TimingLine(stats), std::string("NN inference cost average time: 0 ms of infer_count 0"));
  stats.Add(50.0);
  stats.Add(54.4548);
  stats.Add(52.2274);
  CHECK_EQ(stats.Count(), static_cast<std::size_t>(3));
  CHECK_EQ(stats.MinMs(), 50.0);
  CHECK_EQ(stats.MaxMs(), 54.4548);
  CHECK_EQ(vitjob::TimingLine(stats), std::string("NN inference cost average time: 52.2274 ms of infer_count 3"));
}

void TimingFile() {
  TempDir dir("timing");
  vitjob::TimingStats stats;
  stats.Add(1.5);
  vitjob::WriteTimingFile(dir / "time_Result/test_perform_static.txt", stats);
  std::ifstream in(dir / "time_Result/test_perform_static.txt");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_EQ(text, std::string("NN inference cost average time: 1.5 ms of infer_count 1\n"));
}

// A deterministic predictor: output 0 = {sum, count}, output 1 = the first value.
std::vector<std::vector<std::uint8_t>> SumPredictor(const std::vector<std::uint8_t> &input) {
  const auto values = BytesToFloats(input);
  float sum = 0.0f;
  for (float v : values) sum += v;
  return {FloatBytes({sum, static_cast<float>(values.size())}), FloatBytes({values.at(0)})};
}

void RunAllWritesResults() {
  TempDir dir("runall");
  WriteFloats(dir / "in/s_1.bin", {1.0f, 2.0f, 3.0f});
  WriteFloats(dir / "in/s_0.bin", {-1.0f, 0.5f, 0.5f});
  int calls = 0;
  const vitjob::Predictor predict = [&calls](const std::vector<std::uint8_t> &in) {
    ++calls;
    return SumPredictor(in);
  };
  const auto stats = vitjob::RunAll(dir / "in", dir / "out", 12, predict);
  CHECK_EQ(calls, 2);
  CHECK_EQ(stats.Count(), static_cast<std::size_t>(2));
  CHECK(stats.MeanMs() >= 0.0);
  CHECK(BytesToFloats(vitjob::ReadFile(dir / "out/s_1_0.bin")) == (std::vector<float>{6.0f, 3.0f}));
  CHECK(BytesToFloats(vitjob::ReadFile(dir / "out/s_1_1.bin")) == (std::vector<float>{1.0f}));
  CHECK(BytesToFloats(vitjob::ReadFile(dir / "out/s_0_0.bin")) == (std::vector<float>{0.0f, 3.0f}));
  CHECK(fs::exists(dir / "out/s_0_1.bin"));
}

void RunAllErrors() {
  TempDir dir("runallerr");
  WriteFloats(dir / "in/a.bin", {1.0f, 2.0f});
  CHECK_THROWS(IoError, vitjob::RunAll(dir / "in", dir / "out", 12, SumPredictor), "a.bin has 8 bytes");
  const vitjob::Predictor throwing = [](const std::vector<std::uint8_t> &) -> std::vector<std::vector<std::uint8_t>> {
    throw std::runtime_error("device lost");
  };
  CHECK_THROWS(InferError, vitjob::RunAll(dir / "in", dir / "out", 0, throwing), "device lost");
  const vitjob::Predictor none = [](const std::vector<std::uint8_t> &) {
    return std::vector<std::vector<std::uint8_t>>{};
  };
  CHECK_THROWS(InferError, vitjob::RunAll(dir / "in", dir / "out", 8, none), "returned no output");
  CHECK_THROWS(IoError, vitjob::RunAll(dir / "nothing", dir / "out", 8, SumPredictor), "does not exist");
}

void Fnv1aKnownValues() {
  CHECK_EQ(vitjob::Fnv1a64({}), 0xcbf29ce484222325ULL);
  CHECK_EQ(vitjob::Fnv1a64({'a'}), 0xaf63dc4c8601ec8cULL);
  CHECK_EQ(vitjob::Fnv1a64({'f', 'o', 'o', 'b', 'a', 'r'}), 0x85944171f73967e8ULL);
}

void SummaryValues() {
  TempDir dir("summary");
  WriteFloats(dir / "f.bin", {2.0f, -3.5f, 1.0f});
  const auto s = vitjob::Summarize(dir / "f.bin", "float32");
  CHECK_EQ(s.name, std::string("f.bin"));
  CHECK_EQ(s.bytes, static_cast<std::size_t>(12));
  CHECK_EQ(s.elements, static_cast<std::size_t>(3));
  CHECK_EQ(s.sum, -0.5);
  CHECK_EQ(s.min, -3.5);
  CHECK_EQ(s.max, 2.0);
  CHECK_EQ(s.first, 2.0);
  const std::int32_t label = 7;
  vitjob::WriteFile(dir / "l.bin", &label, sizeof(label));
  const auto l = vitjob::Summarize(dir / "l.bin", "int32");
  CHECK_EQ(l.sum, 7.0);
  CHECK(vitjob::FormatSummary(l).rfind("l.bin bytes=4 elements=1 fnv1a64=", 0) == 0);
  vitjob::WriteFile(dir / "odd.bin", "abc", 3);
  CHECK_THROWS(IoError, vitjob::Summarize(dir / "odd.bin", "float32"), "odd.bin has 3 bytes");
  CHECK_THROWS(ArgError, vitjob::Summarize(dir / "f.bin", "float64"), "dtype");
}

const std::vector<std::pair<std::string, void (*)()>> kCases = {
    {"parse_both_forms", ParseBothForms},
    {"parse_defaults", ParseDefaults},
    {"parse_help", ParseHelp},
    {"parse_errors", ParseErrors},
    {"list_sorted_bin_only", ListSortedBinOnly},
    {"list_errors", ListErrors},
    {"read_write_round_trip", ReadWriteRoundTrip},
    {"read_errors", ReadErrors},
    {"result_naming", ResultNaming},
    {"timing_stats_and_line", TimingStatsAndLine},
    {"timing_file", TimingFile},
    {"run_all_writes_results", RunAllWritesResults},
    {"run_all_errors", RunAllErrors},
    {"fnv1a_known_values", Fnv1aKnownValues},
    {"summary_values", SummaryValues},
};

}  // namespace

int main(int argc, char **argv) {
  std::vector<std::string> wanted(argv + 1, argv + argc);
  if (wanted.size() == 1 && wanted[0] == "--list") {
    for (const auto &c : kCases) std::cout << c.first << "\n";
    return 0;
  }
  int passed = 0;
  int failed = 0;
  for (const auto &name : wanted) {
    bool known = false;
    for (const auto &c : kCases) known = known || c.first == name;
    if (!known) {
      std::cerr << "unknown test case " << name << " (see --list)\n";
      return 2;
    }
  }
  for (const auto &c : kCases) {
    bool selected = wanted.empty();
    for (const auto &name : wanted) selected = selected || name == c.first;
    if (!selected) continue;
    try {
      c.second();
      ++passed;
      std::cout << "PASS " << c.first << "\n";
    } catch (const std::exception &exc) {
      ++failed;
      std::cout << "FAIL " << c.first << ": " << exc.what() << "\n";
    }
  }
  std::cout << passed << " passed, " << failed << " failed\n";
  return failed == 0 ? 0 : 1;
}
