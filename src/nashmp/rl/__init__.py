"""Reinforcement learning with Mirror Descent Policy Optimization (needs torch and gymnasium).

``import nashmp.rl.mdpo`` loads torch and gymnasium; ``import nashmp`` does not.
"""
