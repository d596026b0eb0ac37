// The Python module of the native kernels (the one pybind11 translation unit).

#include <torch/extension.h>

#include "common.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &wlnet::lstm_forward, "wlnet masked LSTM forward");
  m.def("backward", &wlnet::lstm_backward, "wlnet masked LSTM backward");
  m.def("forward_rows", &wlnet::lstm_forward_rows, "wlnet masked LSTM forward on batch-major rows in any order");
  m.def("backward_rows", &wlnet::lstm_backward_rows, "wlnet masked LSTM backward on batch-major rows");
  m.def("gru_forward", &wlnet::gru_forward, "wlnet masked GRU forward");
  m.def("gru_backward", &wlnet::gru_backward, "wlnet masked GRU backward");
  m.def("rnn_forward", &wlnet::rnn_forward, "wlnet masked basic RNN forward");
  m.def("rnn_backward", &wlnet::rnn_backward, "wlnet masked basic RNN backward");
  m.def("bernoulli", &wlnet::bernoulli, "wlnet dropout masks");
  m.def("set_gemm", [](int backend) { wlnet::gemm_backend() = backend; }, "0: the BLAS directly, 1: torch's matmul");
  m.def("gemm", []() { return wlnet::gemm_backend(); }, "the matrix product the kernels call (set_gemm)");
}
