"""The one-line explanation of every step the model takes (what a step player shows)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..edit import Step

# =============================================================================================
# Step explanations (what the step player shows under the slider)
# =============================================================================================

#: One line for every step name the model emits (``Step.name``), in the kernel's words.
STEP_EXPLANATIONS: dict[str, str] = {
    # ---- book3s_hv_rmhandlers.S: hardware threads in real mode
    "kvm_start_guest": "System reset vector after nap: a napper (paca napping set) goes to "
                       "kvm_end_cede; otherwise this is a secondary the host started.",
    "kvmppc_hv_entry": "Guest entry: entry count + 1 (only while no thread has started to "
                       "exit); the primary switches the partition and sets in_guest.",
    "kvmppc_cede_reentry": "Last part of every entry: synthesize at most one pending "
                           "interrupt (external before decrementer), ceded = 0, back to "
                           "the guest.",
    "secondary_too_late": "The exit had already started when this secondary arrived: it "
                          "goes back to secondary_nap without entering.",
    "kvmppc_h_cede: sync; test prodded": "After ceded = 1 and sync, test prodded: a prod "
                                         "that came first makes H_CEDE return at once.",
    "kvmppc_h_cede: napping_threads": "Set this thread's bit in napping_threads, unless it "
                                      "would be the last one awake: then the whole vcore "
                                      "goes to the host.",
    "kvmppc_h_cede: re-check entry_exit_count": "Re-read the exit count after setting the "
                                                "napping bit: an exit that started meanwhile "
                                                "may not have IPI'd this thread.",
    "kvmppc_h_cede: save state, nap": "Save what nap loses (NV GPRs r14-r31, FP/VMX/VSX), "
                                      "enable wake-up on external and decrementer, nap.",
    "kvm_end_cede": "The cede is over without nap (an exit is in progress): clear the "
                    "napping bit and paca napping.",
    "kvm_end_cede: check exit count": "Woken napper: no exit in progress -> back into the "
                                      "guest; otherwise join the exit.",
    "hdec_soon": "Count this thread out (exit count + 1); the first exiter must then get "
                 "every other thread out too.",
    "hdec_soon: HDEC poke, IPI nappers": "First exiter: HDEC = 0 pulls the running threads "
                                         "out; IPIs wake the nappers, whom HDEC cannot "
                                         "wake.",
    "secondary_nap": "Secondary: once the primary has left the partition (in_guest == 0), "
                     "nap_count + 1 and go offline.",
    "switch_to_host": "Primary: every entered thread has exited; switch the partition back "
                      "to the host, in_guest = 0.",
    "kvmppc_interrupt": "The guest takes a hypervisor interrupt (an IPI at 0x500 or the "
                        "HDEC at 0x980) and starts to exit.",
    # ---- guest code
    "guest_run": "A busy burst of guest code ends (it has rewritten its NV registers).",
    "guest_interrupt": "The guest's handler runs for the interrupt synthesized at its "
                       "vector (0x500 or 0x900).",
    "guest_dec": "Running guest code takes its own decrementer interrupt at 0x900 (no "
                 "hypervisor involved).",
    "H_CEDE": "The idle loop programs DEC and calls H_CEDE: real mode sets MSR[EE] and "
              "ceded = 1 (policy host: exit to the host).",
    "H_PROD": "The guest calls H_PROD for another vcpu: handled in the host, so this "
              "thread exits.",
    "H_CONFER": "The guest calls H_CONFER: handled in the host, so this thread exits.",
    "mmio_access": "A load from an emulated device: HDSI, exit to the host and userspace.",
    # ---- book3s_hv.c: host tasks
    "KVM_RUN": "The vcpu's task (QEMU's vcpu thread) calls the KVM_RUN ioctl: under "
               "vc->lock it joins the runnable list, then waits for a running vcore, "
               "sleeps if every vcpu is ceded, or runs the vcore (kvmppc_run_core).",
    "kvmppc_run_vcpu": "The task is back in kvmppc_run_vcpu after handling an hcall in "
                       "the host: RUNNABLE again, and the loop's test under vc->lock.",
    "kvmppc_wait_for_exec": "The task sleeps on cpu_run while another task runs the vcore.",
    "kvmppc_wait_for_exec: woken": "The task waiting on cpu_run is woken, relocks "
                                   "vc->lock and tests the loop condition again.",
    "kvmppc_vcore_blocked": "Every runnable vcpu is ceded: after prepare_to_wait on vc->wq, "
                            "sleep unless a vcpu got work meanwhile.",
    "kvmppc_vcore_blocked: woken": "A kick woke the vcore's runner on vc->wq: go round the "
                                   "loop (under vc->lock) and run the vcore again.",
    "kvmppc_run_core: after exit": "The vcore is back (nap_count >= n_woken): handle every "
                                   "vcpu's exit, arm the DEC hrtimers of ceded vcpus, and go "
                                   "round the loop under the same vc->lock.",
    "kvmppc_run_vcpu: return": "Leave kvmppc_run_vcpu (hcall for the host, MMIO, signal) "
                               "and hand the vcore to another task if needed.",
    "kvmppc_pseries_do_hcall": "The host handles the hcall: H_PROD sets prodded and kicks "
                               "the target if it is ceded.",
    # ---- timers, the remote prodder, store buffers
    "kvmppc_decrementer_func": "The DEC hrtimer of a vcpu ceded in the host fires: queue a "
                               "decrementer exception and kick the vcpu.",
    "H_PROD: smp_mb; test ceded": "Remote H_PROD after smp_mb: if the target is ceded, "
                                  "kick it (the other half of the Dekker pair).",
    "store visible": "The oldest store in a store buffer becomes visible to the other "
                     "threads.",
    # ---- the environment
    "decrementer": "A vcpu's guest decrementer passes zero: a decrementer interrupt is "
                   "due.",
    "KVM_INTERRUPT": "Userspace injects a device interrupt (KVM_INTERRUPT): queue an "
                     "external interrupt and kick the vcpu.",
    "H_PROD (remote)": "A vcpu on another core calls H_PROD for this vcpu: prodded = 1.",
    "hdec": "The host's timer tick is due: HDEC expires and every thread in the guest "
            "exits.",
    "signal": "A signal arrives for the vcpu's task: it leaves KVM_RUN (KVM_EXIT_INTR).",
}


def explain_step(step: Step | str) -> str:
    """The one-line explanation of a step (a :class:`~kvmcede.model.Step` or its name)."""
    name = step if isinstance(step, str) else step.name
    return STEP_EXPLANATIONS.get(name, "")
