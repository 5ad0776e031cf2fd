// ctest (CPU): the CUDA emulation refuses a __syncthreads() that not every live thread of the block
// reaches, undefined behaviour on a GPU that it must not paper over (cudaEmulation/blockScheduler.h):
// a thread that exits while others wait, threads waiting at different __syncthreads() calls, a
// thread-dependent number of barriers. Each such kernel runs in a child process, which must abort
// with the emulation's message naming the threads; kernels whose barriers are uniform (threads
// leaving after the last barrier included) must run to the end with the result a GPU gives.
// And its record of the streams (cudaEmulation::streamRecord), which the kernel and plugin tests read:
// each launch that ran with the stream it was given, failed launches not at all, and every stream
// and device synchronisation, per host thread.
#include "testSupport.h"

#include <cuda_runtime.h>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace
{
using testSupport::check;
using testSupport::DeviceBuffer;

constexpr unsigned int kThreads = 64;

//! Reverses the block through shared memory; odd threads leave after the barrier.
__global__ void reverseThenLeave(int* out)
{
    __shared__ int values[kThreads];
    values[threadIdx.x] = static_cast<int>(threadIdx.x);
    __syncthreads();
    if (threadIdx.x % 2 == 1)
    {
        return;
    }
    out[threadIdx.x] = values[kThreads - 1 - threadIdx.x];
}

//! Thread 5 leaves before the barrier the others wait at.
__global__ void leaveBeforeBarrier(int* out)
{
    if (threadIdx.x == 5)
    {
        return;
    }
    __syncthreads();
    out[threadIdx.x] = 1;
}

//! The lower half of the block waits at one __syncthreads(), the upper half at another.
__global__ void twoBarriers(int* out)
{
    if (threadIdx.x < kThreads / 2)
    {
        __syncthreads();
    }
    else
    {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}

//! Odd threads pass the barrier twice, even threads once.
__global__ void loopOfBarriers(int* out)
{
    for (unsigned int i = 0; i <= threadIdx.x % 2; ++i)
    {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}

//! What a child process did: its exit status or signal, and what it wrote to stderr.
struct ChildResult
{
    bool aborted;
    int exitCode;
    std::string stderrText;
};

//! Launches ``kernel`` on one block of kThreads threads in a child process (the emulation aborts
//! the whole process). The child exits 0 if the launch succeeded and the output equals ``expected``.
ChildResult launchInChild(void (*kernel)(int*), std::vector<int> const& expected)
{
    int pipeFds[2];
    if (pipe(pipeFds) != 0)
    {
        return {false, -1, "pipe failed"};
    }
    pid_t const pid = fork();
    if (pid == 0)
    {
        dup2(pipeFds[1], STDERR_FILENO);
        close(pipeFds[0]);
        DeviceBuffer<int> const out(std::vector<int>(kThreads, 0));
        int* outPointer = out.data();
        void* args[] = {&outPointer};
        bool const ok = cudaLaunchKernel(kernel, dim3(1), dim3(kThreads), args) == cudaSuccess
            && out.download() == expected;
        std::fflush(stderr);
        _exit(ok ? 0 : 1);
    }
    close(pipeFds[1]);
    std::string text;
    char buffer[512];
    for (ssize_t n; (n = read(pipeFds[0], buffer, sizeof(buffer))) > 0;)
    {
        text.append(buffer, static_cast<size_t>(n));
    }
    close(pipeFds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    bool const aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    return {aborted, WIFEXITED(status) ? WEXITSTATUS(status) : -1, text};
}

bool contains(std::string const& text, std::string const& fragment)
{
    return text.find(fragment) != std::string::npos;
}

void uniformBarrierRuns()
{
    std::vector<int> expected(kThreads, 0);
    for (unsigned int t = 0; t < kThreads; t += 2)
    {
        expected[t] = static_cast<int>(kThreads - 1 - t);
    }
    ChildResult const r = launchInChild(reverseThenLeave, expected);
    check(!r.aborted && r.exitCode == 0,
        "threads leaving after the last barrier: the kernel runs, output as on a GPU (" + r.stderrText + ")");
}

void refused(char const* what, void (*kernel)(int*), std::vector<std::string> const& fragments)
{
    ChildResult const r = launchInChild(kernel, std::vector<int>(kThreads, 1));
    bool named = contains(r.stderrText, "non-uniform __syncthreads() in block 0,0,0");
    for (std::string const& fragment : fragments)
    {
        named = named && contains(r.stderrText, fragment);
    }
    check(r.aborted && named,
        std::string(what) + ": aborts naming the threads (" + (r.aborted ? "aborted" : "did not abort") + ", stderr: "
            + r.stderrText + ")");
}
//! Stores 1 at every thread's index.
__global__ void fill(int* out)
{
    out[threadIdx.x] = 1;
}

void streamsRecorded()
{
    cudaEmulation::StreamRecord const before = cudaEmulation::streamRecord();
    cudaStream_t stream = nullptr;
    check(cudaStreamCreate(&stream) == cudaSuccess && stream != nullptr, "cudaStreamCreate gives a stream");
    DeviceBuffer<int> const out(kThreads);
    int* outPointer = out.data();
    void* args[] = {&outPointer};
    check(cudaLaunchKernel(fill, dim3(1), dim3(kThreads), args, 0, stream) == cudaSuccess
            && cudaLaunchKernel(fill, dim3(1), dim3(kThreads), args) == cudaSuccess
            && cudaLaunchKernel(fill, dim3(0), dim3(kThreads), args, 0, stream) == cudaErrorInvalidConfiguration,
        "two launches run, the third is refused");
    cudaGetLastError();
    cudaStreamSynchronize(stream);
    cudaDeviceSynchronize();
    cudaDeviceSynchronize();
    cudaEmulation::StreamRecord const& after = cudaEmulation::streamRecord();
    std::vector<cudaStream_t> const launches(after.launches.begin() + before.launches.size(), after.launches.end());
    check(launches == std::vector<cudaStream_t>{stream, nullptr},
        "the record holds the launches that ran, with their streams (the default stream: nullptr)");
    check(after.streamSynchronizations - before.streamSynchronizations == 1
            && after.deviceSynchronizations - before.deviceSynchronizations == 2,
        "the record counts stream and device synchronisations");
    size_t const launchesHere = after.launches.size();
    size_t otherThreadLaunches = 0;
    std::thread([&] {
        cudaLaunchKernel(fill, dim3(1), dim3(kThreads), args, 0, stream);
        otherThreadLaunches = cudaEmulation::streamRecord().launches.size();
    }).join();
    check(otherThreadLaunches == 1 && cudaEmulation::streamRecord().launches.size() == launchesHere,
        "each host thread has a record of its own");
    cudaStreamDestroy(stream);
}
} // namespace

int main()
{
    uniformBarrierRuns();
    refused("a thread exits while the others wait", leaveBeforeBarrier,
        {"thread 5,0,0 exited", "waits at its __syncthreads() #1 (" __FILE__});
    refused("two halves of the block wait at different __syncthreads()", twoBarriers,
        {"thread 63,0,0 waits at its __syncthreads() #1", "thread 31,0,0 waits at its __syncthreads() #1"});
    refused("a thread-dependent number of barriers", loopOfBarriers, {"exited", "waits at its __syncthreads() #2"});
    streamsRecorded(); // after the children: a fork keeps none of the block scheduler's threads
    int const failures = testSupport::failedChecks();
    std::printf("%s\n", failures == 0 ? "CUDA emulation: streams recorded, non-uniform barriers refused" : "FAILURES");
    return failures == 0 ? 0 : 1;
}
