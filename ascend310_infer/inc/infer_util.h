/*
 * infer_util: everything the Ascend-310 inference program does that does not need the
 * MindSpore SDK — command-line parsing, listing the input directory, `.bin` I/O, result naming,
 * timing statistics and the inference loop itself (driven through a predictor callback).
 *
 * The `.bin` contract (owned on the Python side by vitjob/infer310.py):
 *   - input:  one file per sample, raw little-endian float32, NCHW 1x3xHxW, no header;
 *   - output: one file per model output i, named `<input basename without .bin>_<i>.bin`,
 *             raw bytes of the output tensor (float32 logits 1x10 for ViT on CIFAR-10);
 *   - timing: one line `NN inference cost average time: X ms of infer_count N`.
 */
#ifndef VITJOB_ASCEND310_INFER_UTIL_H_
#define VITJOB_ASCEND310_INFER_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace vitjob {

// Bad command line: the message says what is wrong and how to fix it.
class ArgError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A file or directory that cannot be used: the message names it.
class IoError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The predictor failed or returned something unusable.
class InferError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string model_path;                                        // --model_path (required)
  std::string dataset_path;                                      // --dataset_path (required)
  std::string dataset = "cifar10";                               // --dataset (only cifar10)
  std::string result_path = "./result_Files";                    // --result_path
  std::string time_file = "./time_Result/test_perform_static.txt";  // --time_file
  int device_id = 0;                                             // --device_id
  bool help = false;                                             // --help / -h
};

// Usage text for `main --help` and argument errors.
std::string Usage(const std::string &prog);

// Parses `--key=value` and `--key value`. Throws ArgError on unknown flags, missing values,
// a non-integer or negative --device_id, an unsupported --dataset or missing required flags
// (unless --help was given).
Options ParseArgs(const std::vector<std::string> &args);
Options ParseArgs(int argc, const char *const argv[]);

// Regular files ending in `.bin` directly in `dir`, sorted by name. Throws IoError when `dir`
// does not exist, is not a directory, or holds no `.bin` file.
std::vector<std::string> ListBinFiles(const std::string &dir);

// Whole file as bytes. Throws IoError (naming the file) when it cannot be read or is empty.
std::vector<std::uint8_t> ReadFile(const std::string &path);

// Writes bytes, creating parent directories. Throws IoError naming the file on failure.
void WriteFile(const std::string &path, const void *data, std::size_t size);

// `<dir>/<basename of input without .bin>_<index>.bin`.
std::string ResultPath(const std::string &result_dir, const std::string &input_path, std::size_t index);

// Running statistics of per-sample inference times in milliseconds.
class TimingStats {
 public:
  void Add(double ms);
  std::size_t Count() const { return count_; }
  double TotalMs() const { return total_ms_; }
  double MeanMs() const;  // 0 when empty
  double MinMs() const { return min_ms_; }
  double MaxMs() const { return max_ms_; }

 private:
  std::size_t count_ = 0;
  double total_ms_ = 0.0;
  double min_ms_ = 0.0;
  double max_ms_ = 0.0;
};

// `NN inference cost average time: <mean> ms of infer_count <n>` (mean printed like iostream's
// default, 6 significant digits, e.g. 52.2274).
std::string TimingLine(const TimingStats &stats);

// Writes TimingLine plus a newline to `path`, creating parent directories.
void WriteTimingFile(const std::string &path, const TimingStats &stats);

// Takes one input's bytes and returns the raw bytes of each model output.
using Predictor = std::function<std::vector<std::vector<std::uint8_t>>(const std::vector<std::uint8_t> &)>;

// For every `.bin` in `input_dir` (sorted): read it, check it is exactly `expected_input_bytes`
// (skipped when 0), time `predict`, write every output with ResultPath. Returns the timing.
// Throws IoError for unreadable or wrongly sized inputs and InferError when `predict` throws or
// returns no output.
TimingStats RunAll(const std::string &input_dir, const std::string &result_dir, std::size_t expected_input_bytes,
                   const Predictor &predict);

// Summary of a float32/int32 `.bin` file, for the cross-language test (the Python side computes
// the same from numpy): byte count, element count, FNV-1a 64 of the bytes, sum/min/max and the
// first element, printed as `name bytes=B elements=N fnv1a64=H sum=S min=M max=X first=F`.
struct BinSummary {
  std::string name;
  std::size_t bytes = 0;
  std::size_t elements = 0;
  std::uint64_t fnv1a64 = 0;
  double sum = 0.0;
  double min = 0.0;
  double max = 0.0;
  double first = 0.0;
};

std::uint64_t Fnv1a64(const std::vector<std::uint8_t> &data);

// `dtype` is "float32" or "int32"; throws IoError when the size is not a multiple of 4.
BinSummary Summarize(const std::string &path, const std::string &dtype);
std::string FormatSummary(const BinSummary &summary);

}  // namespace vitjob

#endif  // VITJOB_ASCEND310_INFER_UTIL_H_
