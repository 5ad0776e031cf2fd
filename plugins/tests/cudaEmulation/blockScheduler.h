/*
 * How the CPU emulation runs a grid: blocks one after another, each block's threads as real
 * std::threads of which exactly one runs at a time. The schedule is deterministic and chosen to
 * expose missing barriers: threads start in REVERSE order (the last thread of the block first) and
 * a thread runs until it reaches __syncthreads() or exits; only then does the next one run. So a
 * thread that reads shared memory before a barrier reads what its lower-numbered peers have not
 * written yet. A barrier opens when every thread that has not exited has reached it; then the
 * threads run again, in reverse order. Blocks run in reverse order too (the last block first).
 *
 * On a GPU a __syncthreads() that not every live thread of the block reaches is undefined
 * behaviour (CUDA Programming Guide: only in conditional code that evaluates identically across the
 * block). The emulation refuses it instead of guessing what some GPU would do: when a barrier would
 * open, every thread that ran since the last one must wait at the same barrier, the same call of
 * __syncthreads() in the source reached as the same n-th of its own (each thread counts its
 * barriers); a thread that exited while others wait, or threads waiting at different barriers,
 * abort the program with both threads named.
 */
#pragma once

#include "cuda_runtime_api.h"

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

//! CUDA's built-in variables: per emulated thread.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;

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

//! Which barrier a thread waits at: its `count`-th __syncthreads() of the block, and which call of
//! __syncthreads() in the source (`site`: unique per call in a translation unit; file:line name it).
struct Barrier
{
    unsigned int count;
    int site;
    char const* file;
    int line;

    bool operator==(Barrier const& other) const
    {
        return count == other.count && site == other.site && std::strcmp(file, other.file) == 0;
    }
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
            mWaitsAt.assign(mThreads, Barrier{0, 0, "", 0});
            startRound();
            mBlockDone.take();
        }
    }

    //! __syncthreads() of the running thread at ``site`` (whose count is set here): let the others
    //! run, continue when the barrier opens.
    void syncThreads(unsigned int thread, Barrier site)
    {
        site.count = mWaitsAt[thread].count + 1;
        mWaitsAt[thread] = site;
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
            threadIdx = threadIndex(thread);
            blockIdx = mBlockIdx;
            (*mKernel)();
            mExited[thread] = true;
            handOver();
        }
    }

    uint3 threadIndex(unsigned int thread) const
    {
        return uint3{thread % mBlock.x, thread / mBlock.x % mBlock.y, thread / mBlock.x / mBlock.y};
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
        checkBarrierIsUniform();
        startRound();
    }

    //! At the end of a round, the threads that ran in it have all exited or all wait at one barrier.
    void checkBarrierIsUniform() const
    {
        unsigned int const first = mRound.front();
        for (unsigned int const thread : mRound)
        {
            bool const sameBarrier = mExited[thread] || mWaitsAt[thread] == mWaitsAt[first];
            if (mExited[thread] != mExited[first] || !sameBarrier)
            {
                std::fprintf(stderr,
                    "cudaEmulation: non-uniform __syncthreads() in block %u,%u,%u (undefined behaviour on a GPU):\n",
                    mBlockIdx.x, mBlockIdx.y, mBlockIdx.z);
                describe(first);
                describe(thread);
                std::abort();
            }
        }
    }

    //! Where ``thread`` stopped, on stderr.
    void describe(unsigned int thread) const
    {
        uint3 const t = threadIndex(thread);
        if (mExited[thread])
        {
            std::fprintf(stderr, "  thread %u,%u,%u exited\n", t.x, t.y, t.z);
            return;
        }
        Barrier const& b = mWaitsAt[thread];
        std::fprintf(
            stderr, "  thread %u,%u,%u waits at its __syncthreads() #%u (%s:%d)\n", t.x, t.y, t.z, b.count, b.file, b.line);
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
    dim3 mBlock;
    unsigned int mThreads{0};
    std::function<void()> const* mKernel{nullptr};
    uint3 mBlockIdx{};
    std::vector<bool> mExited;
    std::vector<Barrier> mWaitsAt; //!< per thread: the barrier it waits at (or last passed)
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

//! __syncthreads() of the emulated thread running on this std::thread, called at ``site``.
inline void syncThreads(Barrier const& site)
{
    CurrentThread const& current = currentThread();
    if (current.scheduler == nullptr)
    {
        std::fprintf(stderr, "cudaEmulation: __syncthreads() called outside a kernel (%s:%d)\n", site.file, site.line);
        std::abort();
    }
    current.scheduler->syncThreads(current.index, site);
}

} // namespace cudaEmulation

//! A macro, so that every call of __syncthreads() in the source is a barrier of its own (__COUNTER__
//! numbers them): threads of one block must all reach the same one.
#define __syncthreads() ::cudaEmulation::syncThreads(::cudaEmulation::Barrier{0, __COUNTER__, __FILE__, __LINE__})
