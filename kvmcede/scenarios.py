"""Named scenarios: the worked examples of the reference, and a few more.

Each :class:`Scenario` is a configuration, a workload and a duration chosen so that the
timed simulator really shows what the scenario is about: the S-numbered ones are the
worked scenarios of ``reference/kernel-cede.md`` section 9 (vcpus A, B, C, D are vcpus
0, 1, 2, 3), the others exercise the paths that section says "follow from sections 2-6"
(late joiners, MMIO, H_PROD, signals, PPC970) and the commit's headline effect.

Tests check each scenario against the reference step by step, the CLI runs them
(``python -m kvmcede run --scenario S4``) and the chapters draw them.

>>> from kvmcede.scenarios import scenario
>>> sc = scenario("S4")
>>> tr = sc.run()
>>> tr.metrics.exits_by_reason
{'H_CEDE': 1}
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config, CostModel
from .guest import Busy, Idle, Interrupt, Mmio, Op, Prod, RemoteProd, Signal, Workload
from .sim import simulate
from .trace import Trace

__all__ = ["SCENARIOS", "Scenario", "scenario"]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named configuration + workload + duration, with a title and a description that
    cites the reference section it illustrates."""

    name: str
    title: str
    description: str
    config: Config
    workload: Workload
    until_us: float

    def run(self, check_invariants: bool = False) -> Trace:
        """Simulate the scenario for its own duration."""
        return simulate(self.config, self.workload, until=self.until_us,
                        check_invariants=check_invariants)


def _wl(name: str, *programs: tuple[Op, ...], events: tuple = (),
        start_us: tuple[float, ...] | None = None) -> Workload:
    return Workload(tuple(programs), tuple(events), start_us=start_us, name=name)


# The race of S12 needs B's exit to land between two steps of C's kvmppc_h_cede, one
# real-mode step apart; the offset is derived from the cost model, not guessed.
_RM_US = Config().us(CostModel().realmode_step)


def _headline_programs(duration_us: float) -> tuple[tuple[Op, ...], ...]:
    """vcpu 0 computes throughout; vcpus 1-3 run short bursts between idle periods of
    0.8-1.7 ms (the guest's timer events), out of phase with each other."""
    idle = (1000.0, 1300.0, 800.0, 1700.0, 1100.0, 900.0, 1500.0, 1200.0)
    busy = (60.0, 150.0, 90.0, 120.0, 40.0)
    programs: list[tuple[Op, ...]] = [(Busy(duration_us),)]
    for v in (1, 2, 3):
        ops: list[Op] = [Busy(35.0 * v)]
        t, k = 35.0 * v, 3 * v
        while t < duration_us:
            d, b = idle[k % len(idle)], busy[k % len(busy)]
            ops += [Idle(d), Busy(b)]
            t += d + b
            k += 1
        programs.append(tuple(ops))
    return tuple(programs)


_HEADLINE_US = 20_000.0
_SMT2 = Config(threads_per_core=2, vcpus=2)
_P9 = Config(cpu="POWER9")
_A_B_D_BUSY = Busy(400)

#: S4 and S5 are one run: A, the last busy vcpu, cedes (S4); B's timer then wakes the
#: sleeping vcore (S5, the same workload simulated longer).
_S4_PROGRAMS = ((Busy(30), Idle(4000)), (Idle(200), Busy(400)), (Idle(5000),),
                (Idle(6000),))


_ALL: tuple[Scenario, ...] = (
    Scenario(
        "S1", "All four busy: the vcore starts",
        "A's KVM_RUN finds the vcore INACTIVE and, in the same vc->lock section, "
        "kvmppc_run_core starts it with A as ptid 0 on the runner's own thread 0; B, C and D "
        "then join the running vcore late (first KVM_RUN, exit count 0) as ptids 1-3 in list "
        "order, each thread getting cpu_start = 0x80 and an XICS IPI, so n_woken = 3 "
        "(reference 5.2, 5.3 and S1).  Each thread increments the entry count while the exit "
        "count is 0, and the primary sets vcore->in_guest = 1 (section 4).",
        Config(), _wl("S1", (Busy(100),), (Busy(100),), (Busy(100),), (Busy(100),)), 30.0),
    Scenario(
        "S2", "One idle vcpu cedes, the others stay busy",
        "C calls H_CEDE: kvmppc_h_cede sets MSR[EE] and ceded, finds no prod, sets trap = 0 "
        "and r3 = H_SUCCESS, sets bit 2 of napping_threads (popcount 1 < entry count 4) and "
        "paca napping, re-checks the exit count, saves its NV GPRs and FPRs and naps "
        "(reference section 2 and S2).  A, B and D keep running and the host is not "
        "involved.",
        Config(), _wl("S2", (_A_B_D_BUSY,), (_A_B_D_BUSY,), (Busy(5), Idle(1000)),
                      (_A_B_D_BUSY,)), 60.0),
    Scenario(
        "S3", "A napping vcpu's decrementer expires",
        "C naps in H_CEDE (S2) until its DEC goes negative: the thread wakes through the "
        "system reset vector into kvm_start_guest and kvm_end_cede, does not ack an IPI "
        "(the wake reason is not external), reloads its registers, clears its napping bit "
        "and, with no exit in progress, kvmppc_cede_reentry synthesizes the decrementer "
        "interrupt at 0x900 and clears ceded (reference 3.1-3.3 and S3).  The guest sees "
        "H_CEDE return H_SUCCESS straight into its timer handler; no other thread is "
        "disturbed.",
        Config(), _wl("S3", (_A_B_D_BUSY,), (_A_B_D_BUSY,), (Busy(5), Idle(30), Busy(200)),
                      (_A_B_D_BUSY,)), 100.0),
    Scenario(
        "S4", "The last busy vcpu cedes: the whole vcore goes to the host",
        "B, C and D nap (bits 1-3); when A cedes, popcount(0b1111) = 4 >= entry count 4, "
        "so kvmppc_h_cede returns H_TOO_HARD with A's bit unset and A still ceded, and A "
        "exits first: HDEC poke and IPIs to threads 1-3, which wake, ack the IPI, see the "
        "exit count and join the exit (reference sections 2, 4 and S4).  The host finds "
        "every vcpu ceded with trap 0, arms the four DEC hrtimers (kvmppc_set_timer) and "
        "the runner sleeps on vc->wq in kvmppc_vcore_blocked.",
        Config(), _wl("S4", *_S4_PROGRAMS), 100.0),
    Scenario(
        "S5", "A sleeping vcore is woken by B's decrementer",
        "S4 continued: B's DEC hrtimer fires, kvmppc_decrementer_func queues a DEC and "
        "kvm_vcpu_kick wakes the runner on vc->wq; the runner injects 0x900 into B, which "
        "ends B's cede (reference 5.5 and S5).  kvmppc_run_core gives B ptid 0 (so vcpu0 "
        "is B, run on thread 0 by A's task) and the ceded A, C, D ptids 1-3; all four are "
        "started, A, C and D return from H_CEDE with nothing to do and cede again into "
        "nap because B is running.",
        Config(), _wl("S5", *_S4_PROGRAMS), 300.0),
    Scenario(
        "S12", "C cedes while B is already exiting (MMIO)",
        "B's MMIO exit increments the exit count after C set its napping bit but before C "
        "re-reads entry_exit_count; the timed simulator produces exactly that interleaving "
        "because B's busy burst is 1.5 real-mode steps longer than C's.  C sees the exit "
        "in progress, does not nap, clears its bit and joins the exit as a non-first "
        "exiter through hcall_real_fallback (reference 2 step 10, S12); the host keeps C "
        "ceded with its DEC hrtimer armed while B goes to userspace (KVM_EXIT_MMIO).",
        Config(), _wl("S12", (_A_B_D_BUSY,), (Busy(10 + 1.5 * _RM_US), Mmio(), Busy(200)),
                      (Busy(10), Idle(2000)), (_A_B_D_BUSY,)), 60.0),
    Scenario(
        "S15", "A single-vcpu vcore cedes",
        "With one vcpu the entry count is 1, so popcount(own bit) = 1 >= 1 and every "
        "H_CEDE returns H_TOO_HARD: the core exits (old = 1, so no HDEC poke and no IPIs), "
        "the host arms the DEC hrtimer and the vcore sleeps until the timer fires "
        "(reference S15).  This is the same cost as before the commit.",
        Config(threads_per_core=1, vcpus=1), _wl("S15", (Busy(10), Idle(50), Busy(20))),
        100.0),
    Scenario(
        "S17", "Two vcpus, A busy and B ceded: the vcore restarts",
        "B naps; A's MMIO takes the core out and B stays ceded in the host.  When A comes "
        "back from userspace the runnable list is B, A, yet A gets ptid 0 (non-ceded first) "
        "and B ptid 1; both are started (n_woken = 1), B's entry cancels its cede, B returns "
        "from H_CEDE, cedes again and naps because popcount 1 < entry count 2 (reference "
        "5.2 step 3 and S17).",
        _SMT2, _wl("S17", (Busy(20), Mmio(), Busy(400)), (Idle(3000),)), 150.0),
    Scenario(
        "S22", "Before the commit: one idle vcpu takes the whole core out (policy host)",
        "S2/S3 under policy 'host': H_CEDE is not in hcall_real_table, so C's cede exits "
        "the whole core (HDEC poke, no napping threads to IPI), the host marks C ceded and "
        "arms its DEC hrtimer, and A, B, D re-enter without it; when C's timer fires, the "
        "kick IPIs thread 0 and the whole core leaves the guest again (reference S22 and "
        "5.5).  Two whole-core exits per idle transition; the pre-commit host handler is "
        "inferred.",
        Config(policy="host"), _wl("S22", (_A_B_D_BUSY,), (_A_B_D_BUSY,),
                                   (Busy(5), Idle(30), Busy(200)), (_A_B_D_BUSY,)), 100.0),
    Scenario(
        "headline", "One busy vcpu, three idle ones (the commit)",
        "vcpu 0 computes for 20 ms while vcpus 1-3 run short bursts between idle periods of "
        "about a millisecond.  With real-mode H_CEDE each idle transition is a nap and a "
        "wake-up inside the guest partition; the busy vcpu never leaves the guest for "
        "them (commit message of 19ccb76a; reference sections 2-3).",
        Config(), _wl("headline", *_headline_programs(_HEADLINE_US)), _HEADLINE_US),
    Scenario(
        "headline-host", "One busy vcpu, three idle ones, before the commit (policy host)",
        "The headline workload under policy 'host': every H_CEDE and every wake-up of a "
        "vcpu ceded in the host takes the whole core, and with it the busy vcpu, out of "
        "the guest (reference S22 and 5.5; the pre-commit handler is inferred).  Compare "
        "its exits and lost guest time with the headline scenario's.",
        Config(policy="host"), _wl("headline-host", *_headline_programs(_HEADLINE_US)),
        _HEADLINE_US),
    Scenario(
        "late-join", "A vcpu's first KVM_RUN joins a running vcore",
        "D's task calls KVM_RUN for the first time while the vcore runs with A and B busy "
        "and C napping: kvmppc_run_vcpu sees a STOPPED vcpu, a RUNNING vcore and an exit "
        "count of 0, gives D ptid n_runnable - 1 = 3 and starts its thread at once, which "
        "raises n_woken and, on entry, the entry count (reference 5.3 step 2).  Only a "
        "first KVM_RUN joins this way in 3.4; a vcpu back from userspace waits for the "
        "vcore's next run.",
        Config(), _wl("late-join", (_A_B_D_BUSY,), (_A_B_D_BUSY,), (Busy(5), Idle(5000)),
                      (_A_B_D_BUSY,), start_us=(0.0, 0.0, 0.0, 30.0)), 80.0),
    Scenario(
        "mmio", "An MMIO exit needs the host",
        "B loads from an emulated device: the HDSI exits the whole core, the first exiter "
        "IPIs napping C, and the host returns B to userspace with KVM_EXIT_MMIO and marks "
        "it BUSY_IN_HOST (reference 4 and 5.2 step 9).  While n_busy != 0 nobody runs the "
        "vcore, so A and D wait for B's emulation before the vcore restarts (5.3).",
        Config(), _wl("mmio", (_A_B_D_BUSY,), (Busy(20), Mmio(), Busy(200)), (Idle(5000),),
                      (_A_B_D_BUSY,)), 150.0),
    Scenario(
        "h-prod", "A vcpu prods a napping vcpu (H_PROD)",
        "A calls H_PROD on C, which naps with no timer: H_PROD is not handled in real mode, "
        "so the core exits, the host sets C's prodded flag (reference 5.6; this scenario "
        "runs Linux 4.10's fixes, so a prodded vcpu counts as woken) and restarts the vcore "
        "with C not ceded.  C returns from H_CEDE, cedes again, finds prodded set and "
        "returns at once (kvm_cede_prodded, reference 2 step 4).",
        Config.linux("4.10"), _wl("h-prod", (Busy(30), Prod(2), Busy(300)), (_A_B_D_BUSY,),
                      (Idle(None), Busy(100)), (_A_B_D_BUSY,)), 200.0),
    Scenario(
        "remote-prod", "H_PROD from another core reaches a napping vcpu",
        "A vcpu on another core prods C while C naps in the running vcore: prodded = 1, "
        "smp_mb, C is ceded, so kvm_vcpu_kick sends smp_send_reschedule to vcpu->cpu, "
        "which is thread 0 of the core, and the whole core leaves the guest (reference "
        "5.5, 5.6).  On re-entry C returns from H_CEDE and finds its prod.  (Runs Linux "
        "4.10's fixes; in 3.4 H_PROD tests the caller and kicks nobody.)",
        Config.linux("4.10"), _wl("remote-prod", (_A_B_D_BUSY,), (_A_B_D_BUSY,), (Idle(None), Busy(100)),
                      (_A_B_D_BUSY,), events=(RemoteProd(40.0, 2),)), 120.0),
    Scenario(
        "signal", "Signals to vcpu tasks",
        "B's task, asleep in kvmppc_wait_for_exec while B runs, is woken by a signal but "
        "must wait for the running vcore (reference 5.3 step 4).  A's task is the runner, "
        "running on thread 0; its signal's reschedule IPI (kick_process, inferred) takes "
        "the core out, both vcpus leave with KVM_EXIT_INTR, and each re-enters KVM_RUN.",
        _SMT2, _wl("signal", (Busy(300),), (Busy(300),),
                   events=(Signal(30.0, 1), Signal(70.0, 0))), 120.0),
    Scenario(
        "ppc970", "PPC970: no nap in the guest",
        "On PPC970 (no ARCH_206) kvmppc_h_cede sets trap = 0 and r3 = H_SUCCESS and then "
        "always returns H_TOO_HARD, so every cede exits to the host, which arms the DEC "
        "hrtimer and sleeps the vcore (reference 2 step 6); the wake-up is delivered at "
        "0x900 by the host.  HV KVM on PPC970 has no SMT vcores, so this is S15 without "
        "the choice.",
        Config(cpu="PPC970", threads_per_core=1, vcpus=1),
        _wl("ppc970", (Busy(10), Idle(30), Busy(10))), 100.0),
    Scenario(
        "primary-wake", "A host kick wakes a vcpu napping on the primary thread",
        "A naps on thread 0 while B runs; a device interrupt for A makes kvm_vcpu_kick "
        "IPI vcpu->cpu, which is thread 0.  kvm_end_cede acks the IPI only on secondaries, "
        "so the primary re-enters the guest (delivering the external at 0x500) with the "
        "IPI still pending and at once takes the whole core out to the host (reference 3.2 "
        "step 2 and 5.5).",
        _SMT2, _wl("primary-wake", (Busy(20), Idle(None)), (Busy(300),),
                   events=(Interrupt(60.0, 0),)), 120.0),
    Scenario(
        "held-timer", "A timer that fires while the vcore is held is delivered in real mode",
        "C naps; A's MMIO takes the core out and C stays ceded in the host with its DEC "
        "hrtimer armed, which fires while A is in userspace (n_busy = 1), so the DEC is "
        "queued and the kick finds nobody to wake (reference 5.5).  In 3.4 "
        "kvmppc_run_vcpu counts ceded vcpus before it delivers interrupts (5.3), so when A "
        "is back C is still ceded: it gets the last ptid, is started ceded, and "
        "kvmppc_cede_reentry synthesizes the 0x900 in real mode (reference 3.3) instead of "
        "the host injecting it.",
        Config(vcpus=3), _wl("held-timer", (Busy(20), Mmio(60), Busy(300)), (Busy(300),),
                             (Idle(30), Busy(100))), 150.0),
    Scenario(
        "h-prod-3.4", "H_PROD in Linux 3.4 as shipped: both bugs at once",
        "The h-prod workload on Linux 3.4 as shipped: H_PROD sets C's prodded flag but "
        "tests and wakes the caller (bug hprod_wakes_caller, reference 5.6), and the count "
        "ignores prodded, so C is restarted ceded.  C returns from H_CEDE, cedes again and "
        "finds prodded set, but the branch to the prodded code lands on the nap sequence "
        "(bug prodded_branch, reference 2 step 4): C naps with no napping bit and no saved "
        "registers.",
        Config(), _wl("h-prod-3.4", (Busy(30), Prod(2), Busy(300)), (_A_B_D_BUSY,),
                      (Idle(None), Busy(100)), (_A_B_D_BUSY,)), 200.0),
    Scenario(
        "halt-poll", "Halt polling: the runner polls before it sleeps (Linux 4.7)",
        "A single vcpu cedes for short periods, so every H_CEDE takes the vcore to the host "
        "(S15); with change 0cda69dd kvmppc_vcore_blocked first polls "
        "kvmppc_vcore_check_block() in VCORE_POLLING for vc->halt_poll_ns, and a DEC "
        "hrtimer that fires inside the window is seen without a scheduler wake-up "
        "(reference 7, 2016 halt polling).  The window starts at 0, grows after short "
        "blocks and is reset by a long one; halt_poll_ns is raised to 100 us here because "
        "the model's illustrative host wake-up (20 us) exceeds the 10 us default.",
        Config(threads_per_core=1, vcpus=1, changes={"0cda69dd"},
               costs=CostModel(halt_poll_ns=100_000)),
        _wl("halt-poll", (Busy(5), Idle(10), Busy(5), Idle(10), Busy(5), Idle(10), Busy(5),
                          Idle(300), Busy(5))), 800.0),
    Scenario(
        "mediated-external", "An external interrupt behind a host-injected one (LPCR_MER)",
        "C's DEC expires while A is in userspace for an MMIO, so the host injects 0x900 "
        "into C; a device interrupt for C arrives while C's thread is still being started "
        "and its kick takes the core out before C enters.  On the next entry "
        "kvmppc_cede_reentry finds the external pending with MSR[EE] off and sets LPCR_MER, "
        "so the external is taken at 0x500 as soon as C's timer handler re-enables EE "
        "(reference 3.3).",
        Config(vcpus=3), _wl("mediated-external", (Busy(20), Mmio(40), Busy(3000)),
                             (Busy(3000),), (Idle(25), Idle(None)),
                             events=(Interrupt(80.0, 2),)), 200.0),
    Scenario(
        "p9-headline", "The headline workload on the POWER9 path",
        "The headline workload with cpu 'POWER9' (Linux 4.20+ P9 path, 95a6432c; reference "
        "section 7): every vcpu runs alone in kvmhv_run_single_vcpu on its own thread.  An "
        "idle vcpu's H_CEDE exits only its own thread; kvmppc_cede marks it ceded, the host "
        "arms its DEC hrtimer (kvmppc_set_timer) and its task sleeps on the vcpu's rcuwait, "
        "leaving the thread free for the host; the timer's kick (kvmppc_fast_vcpu_kick_hv) "
        "wakes the task, which re-enters and delivers the DEC at 0x900.  The busy vcpu never "
        "leaves the guest for them, and no exit is ever whole-core: compare its per-vcpu "
        "exits and wake-up latency with the headline scenario's naps.",
        _P9, _wl("p9-headline", *_headline_programs(_HEADLINE_US)), _HEADLINE_US),
    Scenario(
        "p9-h-prod", "H_PROD wakes a ceded vcpu on the POWER9 path",
        "C cedes with no timer: its thread alone leaves the guest, kvmppc_cede finds no "
        "prod, and C's task sleeps on its rcuwait.  A calls H_PROD on C: A's thread exits, "
        "kvmppc_pseries_do_hcall sets C's prodded, smp_mb, sees C ceded and "
        "kvmppc_fast_vcpu_kick_hv wakes C's task (C is on no thread, so no IPI).  "
        "kvmppc_vcpu_check_block sees C woken (prodded), ceded = 0, C re-enters, returns "
        "from H_CEDE with nothing to do, cedes again, and kvmppc_cede finds prodded set: "
        "it clears it and H_CEDE returns at once (reference section 7).  B and D never "
        "leave the guest.",
        _P9, _wl("p9-h-prod", (Busy(100), Prod(2), Busy(300)), (_A_B_D_BUSY,),
                 (Idle(None), Busy(100)), (_A_B_D_BUSY,)), 200.0),
)

#: The scenarios by name, in the order of the reference.

SCENARIOS: dict[str, Scenario] = {sc.name: sc for sc in _ALL}


def scenario(name: str) -> Scenario:
    """The scenario called ``name`` (case-insensitive); ValueError lists the names."""
    sc = SCENARIOS.get(name)
    if sc is None:
        sc = {k.lower(): v for k, v in SCENARIOS.items()}.get(str(name).lower())
    if sc is None:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}; got {name!r}")
    return sc
