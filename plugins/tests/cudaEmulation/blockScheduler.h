/*
 * How the CPU emulation runs a grid: blocks one after another, each block's threads as real
 * std::threads of which exactly one runs at a time. The schedule is deterministic and chosen to
 * expose missing barriers: threads start in REVERSE order (the last thread of the block first) and
 * a thread runs until it reaches __syncthreads() or exits; only then does the next one run. So a
 * thread that reads shared memory before a barrier reads what its lower-numbered peers have not
 * written yet. A barrier opens when every thread that has not exited has reached it; then the
 * threads run again, in reverse order. Blocks run in reverse order too (the last block first).
 */
#pragma once

#include "cuda_runtime_api.h"

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

//! CUDA's built-in variables: per emulated thread.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace cudaEmulation
{

//! Lets one emulated thread run when another hands it over. One per thread, so that a hand-over
//! wakes exactly the thread it is meant for.
class Baton
{
public:
    void give()
    {
        {
            std::lock_guard<std::mutex> lock(mMutex);
            mGiven = true;
        }
        mCondition.notify_one();
    }

    void take()
    {
        std::unique_lock<std::mutex> lock(mMutex);
        mCondition.wait(lock, [this] { return mGiven; });
        mGiven = false;
    }

private:
    std::mutex mMutex;
    std::condition_variable mCondition;
    bool mGiven{false};
};

class BlockScheduler;

//! The scheduler and thread index of the emulated thread running on this std::thread.
struct CurrentThread
{
    BlockScheduler* scheduler{nullptr};
    unsigned int index{0};
};

inline CurrentThread& currentThread()
{
    static thread_local CurrentThread current;
    return current;
}

//! Runs grids: the emulated GPU. Its worker threads (as many as the largest block so far, kept for
//! the life of the program: creating 256 threads per launch would cost more than the kernels) play
//! the threads of one block at a time.
class BlockScheduler
{
public:
    static constexpr unsigned int kMaxThreads = 1024;

    //! Runs ``kernel`` (the kernel with its arguments bound) for every thread of every block; one
    //! caller at a time.
    void run(dim3 grid, dim3 block, std::function<void()> const& kernel)
    {
        mGrid = grid;
        mBlock = block;
        mThreads = block.x * block.y * block.z;
        mKernel = &kernel;
        while (mWorkers.size() < mThreads)
        {
            unsigned int const thread = static_cast<unsigned int>(mWorkers.size());
            mWorkers.emplace_back([this, thread] { threadMain(thread); });
        }
        unsigned long long const blocks = static_cast<unsigned long long>(grid.x) * grid.y * grid.z;
        for (unsigned long long b = blocks; b-- > 0;)
        {
            mBlockIdx = uint3{static_cast<unsigned int>(b % grid.x), static_cast<unsigned int>(b / grid.x % grid.y),
                static_cast<unsigned int>(b / grid.x / grid.y)};
            mExited.assign(mThreads, false);
            startRound();
            mBlockDone.take();
        }
    }

    //! __syncthreads() of the running thread: let the others run, continue when the barrier opens.
    void syncThreads(unsigned int thread)
    {
        handOver();
        mBatons[thread].take();
    }

    ~BlockScheduler()
    {
        mShutdown = true;
        for (size_t i = 0; i < mWorkers.size(); ++i)
        {
            mBatons[i].give();
        }
        for (auto& worker : mWorkers)
        {
            worker.join();
        }
    }

private:
    void threadMain(unsigned int thread)
    {
        currentThread() = CurrentThread{this, thread};
        for (;;)
        {
            mBatons[thread].take();
            if (mShutdown)
            {
                return;
            }
            threadIdx = uint3{thread % mBlock.x, thread / mBlock.x % mBlock.y, thread / mBlock.x / mBlock.y};
            blockIdx = mBlockIdx;
            blockDim = mBlock;
            gridDim = mGrid;
            (*mKernel)();
            mExited[thread] = true;
            handOver();
        }
    }

    //! The running thread stops (at a barrier or at its exit): the next one of this round runs,
    //! or, when the round is over, every thread has reached the barrier or exited.
    void handOver()
    {
        if (mNext < mRound.size())
        {
            mBatons[mRound[mNext++]].give();
            return;
        }
        startRound();
    }

    //! Runs the threads that have not exited, one at a time, the highest index first.
    void startRound()
    {
        mRound.clear();
        for (unsigned int i = mThreads; i-- > 0;)
        {
            if (!mExited[i])
            {
                mRound.push_back(i);
            }
        }
        mNext = 0;
        if (mRound.empty())
        {
            mBlockDone.give();
            return;
        }
        mBatons[mRound[mNext++]].give();
    }

    // Touched only by whoever holds a baton: one thread at a time, ordered by the batons' mutexes.
    dim3 mGrid;
    dim3 mBlock;
    unsigned int mThreads{0};
    std::function<void()> const* mKernel{nullptr};
    uint3 mBlockIdx{};
    std::vector<bool> mExited;
    std::vector<unsigned int> mRound;
    size_t mNext{0};
    bool mShutdown{false};
    Baton mBatons[kMaxThreads];
    Baton mBlockDone;
    std::vector<std::thread> mWorkers; // touched by the launching thread only
};

inline BlockScheduler& blockScheduler()
{
    static BlockScheduler scheduler;
    return scheduler;
}

} // namespace cudaEmulation

inline void __syncthreads()
{
    cudaEmulation::CurrentThread const& current = cudaEmulation::currentThread();
    if (current.scheduler == nullptr)
    {
        std::fprintf(stderr, "cudaEmulation: __syncthreads() called outside a kernel\n");
        std::abort();
    }
    current.scheduler->syncThreads(current.index);
}
