"""Simulators that close the loop: the EHR (encounters) and the payer (remittances)."""
