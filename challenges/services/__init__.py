"""Write-side business logic (HackSoft style): plain functions, keyword-only, atomic."""
